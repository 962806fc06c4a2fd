//! What became of a task, as `pitcrew show`, `diff` and `apply` and the HTTP API read it: the
//! patch of the attempt that made its result commit, and whether `apply` committed it.

use std::collections::BTreeMap;

use pitcrew_core::{Attempt, Task, TaskId, TaskStatus, handle};
use pitcrew_store::{Store, StoreError};
use serde::Serialize;

/// Why a task has no patch to show.
#[derive(Debug, thiserror::Error)]
pub enum ResultError {
    #[error("task {handle} is {status}; only completed tasks have an accepted result")]
    NoResult { handle: String, status: TaskStatus },
    #[error("task {0} has no stored patch")]
    NoPatch(TaskId),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The patch a task's result branch holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ResultPatch {
    pub task: TaskId,
    /// The task's number in the store (its handle `#seq`).
    pub seq: u64,
    /// True for the failing tests of a possible bug, kept for a human to judge; false for an
    /// accepted result.
    pub possible_bug: bool,
    /// A unified diff from the task's base commit.
    pub patch: String,
}

/// The stored patch of a completed task's accepted attempt.
pub async fn accepted_patch(store: &dyn Store, task: &Task) -> Result<String, ResultError> {
    if task.status != TaskStatus::Completed {
        return Err(ResultError::NoResult {
            handle: handle(task.seq),
            status: task.status,
        });
    }
    stored_patch(store, task).await
}

/// The patch stored with the attempt that made the task's result commit.
async fn stored_patch(store: &dyn Store, task: &Task) -> Result<String, ResultError> {
    let attempts = store.attempts(task.id).await?;
    attempts
        .into_iter()
        .rev()
        .find(|a| a.commit.is_some() && a.commit == task.result_commit)
        .and_then(|a| a.patch)
        .ok_or(ResultError::NoPatch(task.id))
}

/// The patch a task's result branch holds: the accepted result of a completed task, or the
/// failing tests of a possible bug (kept for a human to judge).
pub async fn result_patch(store: &dyn Store, task: &Task) -> Result<ResultPatch, ResultError> {
    let possible_bug = task.status == TaskStatus::PossibleBug;
    let patch = if possible_bug {
        stored_patch(store, task).await?
    } else {
        accepted_patch(store, task).await?
    };
    Ok(ResultPatch {
        task: task.id,
        seq: task.seq,
        possible_bug,
        patch,
    })
}

/// The label of a possible bug's patch.
pub fn possible_bug_label(task: &Task) -> String {
    format!(
        "possible bug: task {} is not an accepted result; its tests fail against the code \
         (a bug in the code, or a wrong expectation). Judge them before applying this patch.",
        handle(task.seq)
    )
}

/// A task with the commit `apply` made of its result in the repository at hand, if any.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TaskView {
    #[serde(flatten)]
    pub task: Task,
    /// The commit `pitcrew apply` made of the result on this repository's branch, or null.
    pub applied: Option<String>,
}

impl TaskView {
    /// `task`, looked up in `applied` (task id → commit, as [`pitcrew_runtime::Repo::applied`]
    /// reads it).
    pub fn new(task: Task, applied: &BTreeMap<String, String>) -> Self {
        let applied = applied.get(&task.id.to_string()).cloned();
        TaskView { task, applied }
    }
}

/// A task in full: what `pitcrew show --json` prints.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TaskDetail {
    pub task: TaskView,
    /// Oldest first; their patches only when asked for.
    pub attempts: Vec<Attempt>,
}
