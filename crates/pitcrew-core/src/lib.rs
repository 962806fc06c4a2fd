//! pitcrew's domain types: what a task is, how it moves through the queue, what an attempt
//! records, what a finding says, what the router learns about a model and what a webhook
//! tells. No I/O.

mod attempt;
mod finding;
mod health;
mod limits;
mod names;
mod printable;
mod redact;
mod retry_after;
mod secret;
mod stats;
mod task;
mod verified;
mod webhook;

pub use attempt::{Attempt, AttemptOutcome, AttemptReport, Usage};
pub use finding::{Finding, Severity, bounded};
pub use health::ModelHealth;
pub use limits::{
    LimitDecision, MINUTE_MS, RATE_MARGIN, SharedLimit, judge_limit, utc_day_start_ms,
};
pub use names::UnknownName;
pub use printable::printable;
pub use redact::{
    REDACTED, Redactor, redact, redact_json, redact_string, register_env, register_secret,
    register_secrets,
};
pub use retry_after::parse_retry_after;
pub use secret::{Secret, is_secret_name};
pub use stats::percentile;
pub use task::{
    ErrorClass, ErrorKind, Lease, NewTask, Priority, Task, TaskFilter, TaskId, TaskKind,
    TaskStatus, handle,
};
pub use verified::{VerifiedFile, sha256_hex};
pub use webhook::{RunEnded, TaskEnded, WebhookEvent, WebhookEventType, WebhookSubscription};

/// What [`named_enum!`] expands to with the `openapi` feature refers to utoipa through here.
#[cfg(feature = "openapi")]
#[doc(hidden)]
pub use utoipa as __utoipa;
