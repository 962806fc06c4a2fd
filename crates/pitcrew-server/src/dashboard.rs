//! The dashboard: a page at `/` whose script shows the queue, the running tasks with their
//! generation as it streams, the latest results, the models' health and the spend over time.
//!
//! The page, its script and its style are fixed files holding no data, so they are served
//! without a token; the script asks the person for the token once (when the server has one),
//! keeps it in the tab's `sessionStorage`, and sends it as `Authorization: Bearer` to the API
//! (`/api/v1/events` too, read with `fetch`, since `EventSource` cannot send a header). No
//! cookie is ever set, so no other site can make a browser act with the token (no CSRF).
//! Everything the API returns is written into the page as text (`textContent`), never parsed
//! as markup, and the Content-Security-Policy allows no inline script besides.
//!
//! `/api/v1/dashboard` is what the page shows that no other route gives: the latest results
//! with their evidence, and the spend over time.

use std::collections::HashMap;

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use chrono::{DateTime, Utc};
use pitcrew_core::{Attempt, Finding, TaskId, TaskKind, TaskStatus};
use pitcrew_store::{AttemptFilter, TaskAttempt};
use pitcrew_validate::{FailingTest, ValidationReport};
use serde::Serialize;
use utoipa::ToSchema;

use crate::AppState;
use crate::body::ApiJson;
use crate::error::{ApiError, ErrorBody};

/// How many of the latest results the dashboard shows.
const RECENT_RESULTS: usize = 20;
/// The most points of the spend chart: enough for a smooth line, few enough to send often.
const SPEND_POINTS: usize = 240;
/// How many `error` findings of a result are shown.
const FINDINGS_SHOWN: usize = 5;

/// The page's files: (path, content type, content).
const PAGE_FILES: &[(&str, &str, &str)] = &[
    (
        "/",
        "text/html; charset=utf-8",
        include_str!("../assets/dashboard.html"),
    ),
    (
        "/dashboard.js",
        "text/javascript; charset=utf-8",
        include_str!("../assets/dashboard.js"),
    ),
    (
        "/dashboard.css",
        "text/css; charset=utf-8",
        include_str!("../assets/dashboard.css"),
    ),
    (
        "/favicon.svg",
        "image/svg+xml",
        include_str!("../assets/favicon.svg"),
    ),
];

/// The routes of the page's files. They need no token: they hold no data.
pub(crate) fn page_routes() -> Router<AppState> {
    PAGE_FILES
        .iter()
        .fold(Router::new(), |router, &(path, content_type, content)| {
            router.route(
                path,
                get(move || async move {
                    // Revalidated on every load, so a new binary's page is never mixed with
                    // an old script from the cache.
                    (
                        [
                            (header::CONTENT_TYPE, content_type),
                            (header::CACHE_CONTROL, "no-cache"),
                        ],
                        content,
                    )
                        .into_response()
                }),
            )
        })
}

/// What the dashboard shows beyond the other routes.
#[derive(Debug, Serialize, ToSchema)]
pub struct DashboardView {
    /// The tasks that ended most recently (completed, failed, possible bug or cancelled after
    /// an attempt), newest first; at most 20.
    pub results: Vec<RecentResult>,
    /// What the model calls cost, added up attempt after attempt in the order they ended
    /// (attempts that reported no cost are left out); at most 240 points, evenly picked, the
    /// last one always.
    pub spend: Vec<SpendPoint>,
}

/// A task that ended, with what its last attempt showed.
#[derive(Debug, Serialize, ToSchema)]
pub struct RecentResult {
    pub task: TaskId,
    /// The task's number in the store (its handle `#seq`).
    pub seq: u64,
    pub kind: TaskKind,
    pub targets: Vec<String>,
    pub description: String,
    /// completed, failed, possible_bug or cancelled.
    pub status: TaskStatus,
    /// When its last attempt ended.
    pub finished_at: Option<DateTime<Utc>>,
    /// The attempts made at it.
    pub attempts: usize,
    /// The provider's id of the model whose reply the last attempt used.
    pub model: Option<String>,
    /// What the calls of every attempt cost, when any reported a cost.
    pub cost_usd: Option<f64>,
    /// The last attempt's validated quality (0–1).
    pub quality: Option<f64>,
    /// The last attempt's evidence card, a line per kind of evidence (as `pitcrew show`
    /// prints it): tests and reruns, coverage, mutants, time per stage, quality.
    pub evidence: Vec<String>,
    /// Why the task failed.
    pub error: Option<String>,
    /// The last attempt's `error` findings, at most five.
    pub findings: Vec<Finding>,
    /// Tests that fail against the code, kept for a human to judge (a possible bug's).
    pub failing_tests: Vec<FailingTestView>,
    /// Whether `/api/v1/tasks/{id}/diff` has a patch: a completed task's result or a
    /// possible bug's tests.
    pub has_patch: bool,
}

/// A new test that failed on an assertion of its own.
#[derive(Debug, Serialize, ToSchema)]
pub struct FailingTestView {
    /// pytest's node id.
    pub test: String,
    /// The failing assertion with the values the code gave.
    pub failure: String,
}

/// The spend so far, when an attempt ended.
#[derive(Debug, Serialize, ToSchema)]
pub struct SpendPoint {
    pub at: DateTime<Utc>,
    /// USD spent by every attempt that ended by then.
    pub total_usd: f64,
}

/// The latest results with their evidence, and the spend over time.
///
/// What the dashboard at `/` shows beyond the other routes (it reads the queue, the running
/// tasks, the models and the metrics from theirs).
#[utoipa::path(
    get,
    path = "/api/v1/dashboard",
    tag = "dashboard",
    responses(
        (status = 200, description = "The latest results and the spend", body = DashboardView),
        (status = 401, description = "No token, or a wrong one", body = ErrorBody),
    )
)]
pub(crate) async fn dashboard(
    State(state): State<AppState>,
) -> Result<ApiJson<DashboardView>, ApiError> {
    let recorded = state
        .store
        .recorded_attempts(&AttemptFilter::default())
        .await?;
    let mut results = Vec::new();
    for (task, attempts) in latest_ended(&recorded) {
        let found = state.store.find(&task.to_string()).await?;
        results.push(recent_result(found, &attempts));
    }
    Ok(ApiJson::ok(DashboardView {
        results,
        spend: spend_over_time(&recorded),
    }))
}

/// The tasks whose status is final now and whose last attempt ended latest, newest first,
/// each with its attempts in order.
fn latest_ended(recorded: &[TaskAttempt]) -> Vec<(TaskId, Vec<&Attempt>)> {
    let mut by_task: HashMap<TaskId, (TaskStatus, Vec<&Attempt>)> = HashMap::new();
    for r in recorded {
        let entry = by_task
            .entry(r.attempt.task_id)
            .or_insert_with(|| (r.task_status, Vec::new()));
        entry.1.push(&r.attempt);
    }
    let mut ended: Vec<(TaskId, Vec<&Attempt>)> = by_task
        .into_iter()
        .filter(|(_, (status, _))| status.is_terminal())
        .map(|(task, (_, mut attempts))| {
            attempts.sort_by_key(|a| a.number);
            (task, attempts)
        })
        .collect();
    let ended_at = |attempts: &[&Attempt]| {
        attempts
            .last()
            .map(|a| (a.finished_at.unwrap_or(a.started_at), a.task_id))
    };
    ended.sort_by_key(|(_, attempts)| std::cmp::Reverse(ended_at(attempts)));
    ended.truncate(RECENT_RESULTS);
    ended
}

fn recent_result(task: pitcrew_core::Task, attempts: &[&Attempt]) -> RecentResult {
    let last = attempts.last();
    let validation = last.and_then(|a| {
        let report = a.details.get("validation")?;
        serde_json::from_value::<ValidationReport>(report.clone()).ok()
    });
    let failing_tests = last
        .and_then(|a| a.details.get("possible_bugs"))
        .and_then(|bugs| serde_json::from_value::<Vec<FailingTest>>(bugs.clone()).ok())
        .unwrap_or_default()
        .into_iter()
        .map(|bug| FailingTestView {
            test: bug.test,
            failure: bug.failure,
        })
        .collect();
    let has_patch = matches!(task.status, TaskStatus::Completed | TaskStatus::PossibleBug);
    RecentResult {
        task: task.id,
        seq: task.seq,
        kind: task.kind,
        targets: task.targets,
        description: task.description,
        status: task.status,
        finished_at: last.and_then(|a| a.finished_at),
        attempts: attempts.len(),
        model: last.and_then(|a| a.model.clone()),
        cost_usd: pitcrew_metrics::total_cost(attempts.iter().map(|a| a.usage.cost_usd)),
        quality: last.and_then(|a| a.quality),
        evidence: validation.map(|v| v.card()).unwrap_or_default(),
        error: task.last_error,
        findings: last
            .map(|a| {
                (a.findings.iter())
                    .filter(|f| f.is_error())
                    .take(FINDINGS_SHOWN)
                    .cloned()
                    .collect()
            })
            .unwrap_or_default(),
        failing_tests,
        has_patch,
    }
}

/// The running total of what the attempts cost, at each end of an attempt that reported one.
fn spend_over_time(recorded: &[TaskAttempt]) -> Vec<SpendPoint> {
    let mut costs: Vec<(DateTime<Utc>, f64)> = recorded
        .iter()
        .filter_map(|r| Some((r.attempt.finished_at?, r.attempt.usage.cost_usd?)))
        .collect();
    costs.sort_by_key(|(at, _)| *at);
    let mut total_usd = 0.0;
    let points = costs
        .into_iter()
        .map(|(at, cost)| {
            total_usd += cost;
            SpendPoint { at, total_usd }
        })
        .collect();
    evenly_picked(points, SPEND_POINTS)
}

/// At most `most` of `items`, spread evenly and ending with the last.
fn evenly_picked<T>(items: Vec<T>, most: usize) -> Vec<T> {
    let count = items.len();
    if count <= most {
        return items;
    }
    // The k-th of `most` picks is the last item of the k-th of `most` equal runs.
    let mut next_pick = 1;
    items
        .into_iter()
        .enumerate()
        .filter(|(index, _)| {
            let picked = *index + 1 == next_pick * count / most;
            if picked {
                next_pick += 1;
            }
            picked
        })
        .map(|(_, item)| item)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evenly_picked_keeps_at_most_so_many_and_always_the_last() {
        assert_eq!(evenly_picked(vec![1, 2, 3], 5), [1, 2, 3]);
        assert_eq!(evenly_picked((1..=10).collect(), 5), [2, 4, 6, 8, 10]);
        let picked = evenly_picked((1..=1000).collect::<Vec<_>>(), 240);
        assert_eq!(picked.len(), 240);
        assert_eq!(picked.last(), Some(&1000));
        assert!(picked.windows(2).all(|w| w[0] < w[1]));
        assert!(evenly_picked(Vec::<u8>::new(), 3).is_empty());
    }
}
