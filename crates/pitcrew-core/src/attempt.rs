use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::named_enum;
use crate::{ErrorKind, Finding, TaskId};

named_enum! {
    /// How one attempt at a task ended.
    pub enum AttemptOutcome ("attempt outcome") {
        /// Still held by a worker.
        Running = "running",
        /// Produced an accepted result.
        Completed = "completed",
        /// Ended with an error (the task may be retried; see the task's status).
        Failed = "failed",
        /// Produced a well-formed test that fails against the current code.
        PossibleBug = "possible_bug",
        /// Its worker vanished and the lease expired; another attempt took over.
        Abandoned = "abandoned",
        /// The task was cancelled while this attempt ran.
        Cancelled = "cancelled",
    }
}

/// Tokens and money one attempt spent, as the provider reported them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Usage {
    pub tokens_in: u64,
    pub tokens_out: u64,
    /// `None` when the provider did not report a cost.
    pub cost_usd: Option<f64>,
}

/// What a worker reports when an attempt ends; written together with the task's new status.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct AttemptReport {
    /// The model id that was called (never a preset name).
    pub model: Option<String>,
    pub usage: Usage,
    pub latency_ms: Option<u64>,
    pub findings: Vec<Finding>,
    pub error_kind: Option<ErrorKind>,
    pub error: Option<String>,
    pub commit: Option<String>,
    pub patch: Option<String>,
    /// The `pitcrew run` (or worker process) that made the attempt.
    pub run_id: Option<String>,
    /// The validated quality of the final output, 0–1, when validation ran.
    pub quality: Option<f64>,
    /// What happened along the way, as JSON: iterations (model, tokens, cost, findings),
    /// the context included and cut, the validation rules that ran, coverage gained, cache
    /// hits. `Null` when there is nothing to say.
    pub details: serde_json::Value,
}

impl AttemptReport {
    /// Replaces every registered secret ([`crate::redact`]) in the report's text: the error,
    /// the findings and the details. Never the commit or the patch: what is committed is what
    /// was verified, byte for byte.
    pub fn redact_secrets(&mut self) {
        if let Some(error) = &mut self.error {
            crate::redact_string(error);
        }
        for finding in &mut self.findings {
            finding.redact_secrets();
        }
        crate::redact_json(&mut self.details);
    }
}

/// One recorded attempt.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Attempt {
    pub task_id: TaskId,
    pub number: u32,
    pub worker: String,
    pub outcome: AttemptOutcome,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub model: Option<String>,
    pub usage: Usage,
    pub latency_ms: Option<u64>,
    pub findings: Vec<Finding>,
    pub error_kind: Option<ErrorKind>,
    pub error: Option<String>,
    pub commit: Option<String>,
    pub patch: Option<String>,
    pub run_id: Option<String>,
    pub quality: Option<f64>,
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub details: serde_json::Value,
}
