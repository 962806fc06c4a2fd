//! `/api/v1/tasks`: submitting (one task, or a batch that is stored whole or not at all),
//! listing, reading, cancelling, retrying, and the result's patch. Each does what the CLI
//! command of the same name does, with the same checks and messages.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use pitcrew_config::batch::TaskSpec;
use pitcrew_core::{NewTask, Task, TaskFilter, TaskKind, TaskStatus};
use pitcrew_engine::results::{ResultPatch, TaskDetail, TaskView, result_patch};
use pitcrew_engine::submission::{SubmissionChecker, batch_rejected};
use pitcrew_store::Submitted;
use serde::{Deserialize, Serialize};
// `IntoParams` is not imported: the `#[utoipa::path]` code calls it by its full path.
use utoipa::ToSchema;

use crate::AppState;
use crate::body::{ApiJson, BATCH_BODY_LIMIT, JsonBody, QueryParams, TASK_BODY_LIMIT};
use crate::error::{ApiError, EntryProblem, ErrorBody};

/// Tasks a page holds when the request does not say.
const DEFAULT_PAGE: u32 = 100;
/// The most tasks a page holds.
const MAX_PAGE: u32 = 1000;

/// A batch of tasks: queued all together, or — when any entry is wrong — none of them.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchRequest {
    /// The tasks, in the order they are queued. Each entry is read on its own, so every bad
    /// one is reported with its index.
    #[schema(value_type = Vec<TaskSpec>)]
    pub tasks: Vec<serde_json::Value>,
}

/// Which tasks to list, and which page.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only tasks with this status.
    pub status: Option<TaskStatus>,
    /// Only tasks of this kind.
    pub kind: Option<TaskKind>,
    /// At most this many tasks (1–1000; 100 when not given).
    pub limit: Option<u32>,
    /// Where the previous page ended: its `next_cursor`.
    pub cursor: Option<String>,
}

/// A page of tasks, in the order they were submitted.
#[derive(Debug, Serialize, ToSchema)]
pub struct TaskPage {
    pub tasks: Vec<TaskView>,
    /// Pass as `cursor` for the next page; null on the last one. Tasks submitted meanwhile
    /// come on later pages; none is skipped or repeated.
    pub next_cursor: Option<String>,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ShowQuery {
    /// Include each attempt's patch (as `pitcrew show --diff`).
    #[serde(default)]
    pub patches: bool,
}

/// 201 when something new was queued; 200 when every task was already queued under its
/// idempotency key.
fn submitted_status(submitted: &[Submitted]) -> StatusCode {
    if submitted.iter().any(|s| !s.deduplicated) {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    }
}

fn checker(state: &AppState) -> SubmissionChecker<'_> {
    // Requests come from anywhere: targets are relative to the repository root.
    SubmissionChecker::new(
        &state.repo,
        &state.config,
        state.repo.root(),
        state.repo_url.clone(),
    )
}

/// Queue one task.
///
/// Checked as `pitcrew submit` checks it: kind, targets (inside the repository, present at
/// the base commit for kinds that work on existing files), base, preset, prompt template.
/// Targets are relative to the repository root.
#[utoipa::path(
    post,
    path = "/api/v1/tasks",
    tag = "tasks",
    request_body = TaskSpec,
    responses(
        (status = 201, description = "Queued", body = Submitted),
        (status = 200, description = "An unfinished task already has this idempotency key: that task (`deduplicated`)", body = Submitted),
        (status = 400, description = "The body is not JSON", body = ErrorBody),
        (status = 401, description = "No token, or a wrong one", body = ErrorBody),
        (status = 413, description = "The body is over 1 MiB", body = ErrorBody),
        (status = 415, description = "The body is not sent as JSON", body = ErrorBody),
        (status = 422, description = "The task is wrong: the message names the field or the problem (`invalid_body`, `invalid_task`)", body = ErrorBody),
    )
)]
pub(crate) async fn submit_task(
    State(state): State<AppState>,
    JsonBody(spec): JsonBody<TaskSpec, TASK_BODY_LIMIT>,
) -> Result<ApiJson<Submitted>, ApiError> {
    let task = checker(&state)
        .check(spec)
        .await
        .map_err(|e| ApiError::unprocessable("invalid_task", e.0))?;
    let submitted = state.store.submit(std::slice::from_ref(&task)).await?;
    let status = submitted_status(&submitted);
    let one = submitted
        .into_iter()
        .next()
        .ok_or_else(|| ApiError::internal(&std::io::Error::other("the store returned no task")))?;
    Ok(ApiJson(status, one))
}

/// Queue a batch of tasks, all or nothing.
///
/// Every entry is checked before anything is stored, as `pitcrew submit --file` does; when
/// any is wrong nothing is queued and the error lists each bad entry with its index.
#[utoipa::path(
    post,
    path = "/api/v1/tasks/batch",
    tag = "tasks",
    request_body = BatchRequest,
    responses(
        (status = 201, description = "Queued, in order", body = [Submitted]),
        (status = 200, description = "Every task was already queued under its idempotency key", body = [Submitted]),
        (status = 400, description = "The body is not JSON", body = ErrorBody),
        (status = 401, description = "No token, or a wrong one", body = ErrorBody),
        (status = 413, description = "The body is over 16 MiB", body = ErrorBody),
        (status = 415, description = "The body is not sent as JSON", body = ErrorBody),
        (status = 422, description = "Nothing was queued: `invalid_batch` with `problems`, one per bad entry", body = ErrorBody),
    )
)]
pub(crate) async fn submit_batch(
    State(state): State<AppState>,
    JsonBody(batch): JsonBody<BatchRequest, BATCH_BODY_LIMIT>,
) -> Result<ApiJson<Vec<Submitted>>, ApiError> {
    if batch.tasks.is_empty() {
        return Err(ApiError::unprocessable(
            "invalid_batch",
            "no tasks in the batch",
        ));
    }
    let entries = batch.tasks.into_iter().enumerate().map(|(index, entry)| {
        (
            index,
            serde_json::from_value::<TaskSpec>(entry).map_err(|e| e.to_string()),
        )
    });
    let tasks: Vec<NewTask> = checker(&state).check_all(entries).await.map_err(|bad| {
        let lines: Vec<String> = bad
            .iter()
            .map(|(index, reason)| format!("tasks[{index}]: {reason}"))
            .collect();
        let problems = bad
            .into_iter()
            .map(|(index, message)| EntryProblem { index, message })
            .collect();
        ApiError::unprocessable("invalid_batch", batch_rejected(&lines)).with_problems(problems)
    })?;
    let submitted = state.store.submit(&tasks).await?;
    Ok(ApiJson(submitted_status(&submitted), submitted))
}

/// List tasks, oldest first, a page at a time.
#[utoipa::path(
    get,
    path = "/api/v1/tasks",
    tag = "tasks",
    params(ListQuery),
    responses(
        (status = 200, description = "A page of tasks", body = TaskPage),
        (status = 400, description = "A parameter is unknown or has a bad value", body = ErrorBody),
        (status = 401, description = "No token, or a wrong one", body = ErrorBody),
    )
)]
pub(crate) async fn list_tasks(
    State(state): State<AppState>,
    QueryParams(query): QueryParams<ListQuery>,
) -> Result<ApiJson<TaskPage>, ApiError> {
    let limit = query.limit.unwrap_or(DEFAULT_PAGE);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(ApiError::bad_request(
            "invalid_query",
            format!("limit must be between 1 and {MAX_PAGE}"),
        ));
    }
    let after_seq = match &query.cursor {
        Some(cursor) => Some(cursor.parse::<u64>().map_err(|_| {
            ApiError::bad_request(
                "invalid_query",
                format!("cursor `{cursor}` is not one this API gave: pass a page's `next_cursor`"),
            )
        })?),
        None => None,
    };
    // One more than asked for says whether another page follows.
    let mut tasks = state
        .store
        .list(&TaskFilter {
            status: query.status,
            kind: query.kind,
            limit: Some(limit + 1),
            after_seq,
        })
        .await?;
    let more = tasks.len() > limit as usize;
    tasks.truncate(limit as usize);
    let next_cursor = more
        .then(|| tasks.last().map(|t| t.seq.to_string()))
        .flatten();
    let applied = applied(&state).await?;
    Ok(ApiJson::ok(TaskPage {
        tasks: tasks
            .into_iter()
            .map(|t| TaskView::new(t, &applied))
            .collect(),
        next_cursor,
    }))
}

/// Which tasks `pitcrew apply` committed in the repository.
async fn applied(state: &AppState) -> Result<std::collections::BTreeMap<String, String>, ApiError> {
    state
        .repo
        .applied()
        .await
        .map_err(|e| ApiError::internal(&e))
}

/// One task with its attempts.
///
/// `id` is the task's handle (`42`, or `#42` written `%2342`), its id, or a unique prefix of
/// the id.
#[utoipa::path(
    get,
    path = "/api/v1/tasks/{id}",
    tag = "tasks",
    params(("id" = String, Path, description = "Handle, id or unique prefix of the id"), ShowQuery),
    responses(
        (status = 200, description = "The task and its attempts, oldest first", body = TaskDetail),
        (status = 400, description = "The prefix matches several tasks, or a parameter is wrong", body = ErrorBody),
        (status = 401, description = "No token, or a wrong one", body = ErrorBody),
        (status = 404, description = "No such task", body = ErrorBody),
    )
)]
pub(crate) async fn get_task(
    State(state): State<AppState>,
    Path(id): Path<String>,
    QueryParams(query): QueryParams<ShowQuery>,
) -> Result<ApiJson<TaskDetail>, ApiError> {
    let task = state.store.find(&id).await?;
    let mut attempts = state.store.attempts(task.id).await?;
    if !query.patches {
        attempts.iter_mut().for_each(|a| a.patch = None);
    }
    let applied = applied(&state).await?;
    Ok(ApiJson::ok(TaskDetail {
        task: TaskView::new(task, &applied),
        attempts,
    }))
}

/// Cancel a queued or running task.
#[utoipa::path(
    post,
    path = "/api/v1/tasks/{id}/cancel",
    tag = "tasks",
    params(("id" = String, Path, description = "Handle, id or unique prefix of the id")),
    responses(
        (status = 200, description = "The task, cancelled", body = Task),
        (status = 401, description = "No token, or a wrong one", body = ErrorBody),
        (status = 404, description = "No such task", body = ErrorBody),
        (status = 409, description = "The task is finished (`invalid_state`)", body = ErrorBody),
    )
)]
pub(crate) async fn cancel_task(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<ApiJson<Task>, ApiError> {
    let task = state.store.find(&id).await?;
    Ok(ApiJson::ok(state.store.cancel(task.id).await?))
}

/// Put a failed or cancelled task back in the queue, with one more attempt.
#[utoipa::path(
    post,
    path = "/api/v1/tasks/{id}/retry",
    tag = "tasks",
    params(("id" = String, Path, description = "Handle, id or unique prefix of the id")),
    responses(
        (status = 200, description = "The task, queued again", body = Task),
        (status = 401, description = "No token, or a wrong one", body = ErrorBody),
        (status = 404, description = "No such task", body = ErrorBody),
        (status = 409, description = "The task is not failed or cancelled (`invalid_state`)", body = ErrorBody),
    )
)]
pub(crate) async fn retry_task(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<ApiJson<Task>, ApiError> {
    let task = state.store.find(&id).await?;
    Ok(ApiJson::ok(state.store.requeue(task.id).await?))
}

/// The patch of a task's result, as `pitcrew diff` prints it.
///
/// A completed task's accepted result, or a possible bug's failing tests (`possible_bug`
/// true: judge them before applying).
#[utoipa::path(
    get,
    path = "/api/v1/tasks/{id}/diff",
    tag = "tasks",
    params(("id" = String, Path, description = "Handle, id or unique prefix of the id")),
    responses(
        (status = 200, description = "The patch", body = ResultPatch),
        (status = 401, description = "No token, or a wrong one", body = ErrorBody),
        (status = 404, description = "No such task (`task_not_found`), or no patch stored (`no_patch`)", body = ErrorBody),
        (status = 409, description = "The task has no result yet (`no_result`)", body = ErrorBody),
    )
)]
pub(crate) async fn task_diff(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<ApiJson<ResultPatch>, ApiError> {
    let task = state.store.find(&id).await?;
    Ok(ApiJson::ok(result_patch(&*state.store, &task).await?))
}
