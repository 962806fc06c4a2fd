//! Figures from the attempts a store recorded: per model, per task kind, per run and in
//! total — attempts, success rate, latency and time to first token percentiles, tokens, cost,
//! quality, rate limits and unusable replies — with the tasks by status, the throughput and
//! the accepted results per dollar. What `pitcrew metrics` prints, as a table, JSON
//! ([`Metrics`] serialized) or Prometheus text ([`render_prometheus`]); anything else that
//! shows metrics (an HTTP `/metrics`) calls [`gather`] and the same renderer, so they agree.
//!
//! The figures come from two records: the attempt (its outcome, quality, run, task kind and
//! the model that gave its last reply) and the calls it made, which the router records in the
//! attempt's details (model, error kind, tokens, cost, latency, time to first token), so a
//! model that was rate-limited before another one answered is counted where it failed.
//!
//! A figure without data is `None`, never a stand-in (see [`Figures`]); counts of nothing
//! are 0.
//!
//! Beside them, the webhook deliveries of the window by state, in total and per endpoint
//! ([`WebhookFigures`]): how many were delivered, wait for a retry, or were given up.

mod compute;
mod figures;
mod prometheus;
mod recorded;
mod since;
#[cfg(test)]
mod tests;
mod webhooks;

use chrono::{DateTime, Utc};
use pitcrew_core::TaskId;
use pitcrew_store::{AttemptFilter, Store, StoreError};

pub use compute::{
    KindFigures, Metrics, ModelFigures, RunFigures, Selection, Totals, Window, compute,
};
pub use figures::{Figures, percentile, total_cost};
pub use prometheus::{escape_label_value, render_prometheus};
pub use since::{InvalidSince, SINCE_FORMS, Since};
pub use webhooks::{EndpointFigures, WebhookFigures, webhook_figures};

#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("attempt {attempt} of task {task} has details that cannot be read: {reason}")]
    UnreadableDetails {
        task: TaskId,
        attempt: u32,
        reason: String,
    },
}

/// The figures of `selection` in `store`, as of `now` (the end of a `since` window). Two
/// queries: the store selects attempts by start and kind, [`compute`] does the rest; and it
/// counts the webhook deliveries of the window, which [`webhook_figures`] sums up.
pub async fn gather(
    store: &dyn Store,
    selection: &Selection,
    now: DateTime<Utc>,
) -> Result<Metrics, MetricsError> {
    let recorded = store
        .recorded_attempts(&AttemptFilter {
            started_since: selection.since,
            kind: selection.kind,
        })
        .await?;
    let deliveries = store.webhook_delivery_counts(selection.since).await?;
    let mut metrics = compute(&recorded, selection, now)?;
    metrics.webhooks = webhook_figures(&deliveries);
    Ok(metrics)
}
