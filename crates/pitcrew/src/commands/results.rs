//! Getting accepted results out: `diff` prints a task's patch, `apply` commits results onto
//! the user's current branch.

use std::process::ExitCode;

use pitcrew_core::{Task, TaskFilter, TaskStatus};
use pitcrew_runtime::Applied;
use pitcrew_store::Store;
use serde::Serialize;

use crate::context::Context;
use crate::output::{self, usage};

/// The stored patch of a completed task's accepted attempt.
pub async fn accepted_patch(store: &dyn Store, task: &Task) -> anyhow::Result<String> {
    if task.status != TaskStatus::Completed {
        anyhow::bail!(
            "task {} is {}; only completed tasks have an accepted result",
            task.id,
            task.status
        );
    }
    let attempts = store.attempts(task.id).await?;
    attempts
        .into_iter()
        .rev()
        .find(|a| a.commit.is_some() && a.commit == task.result_commit)
        .and_then(|a| a.patch)
        .ok_or_else(|| anyhow::anyhow!("task {} has no stored patch", task.id))
}

pub async fn diff(ctx: &Context, id: &str) -> anyhow::Result<ExitCode> {
    let store = ctx.store().await?;
    let task = store.find(id).await?;
    output::line(accepted_patch(&*store, &task).await?.trim_end());
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, Serialize)]
struct ApplyResult {
    task: String,
    result: &'static str,
    commit: Option<String>,
    conflicts: Vec<String>,
}

pub async fn apply(
    ctx: &Context,
    ids: &[String],
    all: bool,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let repo = &ctx.repo;
    let Some(branch) = repo.current_branch().await? else {
        return Err(usage(
            "HEAD is detached; check out the branch to apply the results onto",
        ));
    };
    if !repo.is_clean().await? {
        return Err(usage(
            "the working tree has uncommitted changes; commit or stash them first, so a \
             conflicting result can be backed out cleanly",
        ));
    }
    let store = ctx.store().await?;
    let tasks = if all {
        store
            .list(&TaskFilter {
                status: Some(TaskStatus::Completed),
                ..TaskFilter::default()
            })
            .await?
            .into_iter()
            .filter(|t| t.repo == repo.root().to_string_lossy())
            .collect()
    } else {
        let mut tasks = Vec::with_capacity(ids.len());
        for id in ids {
            tasks.push(store.find(id).await?);
        }
        tasks
    };

    let mut results = Vec::with_capacity(tasks.len());
    for task in &tasks {
        let patch = accepted_patch(&*store, task).await?;
        let message = format!(
            "pitcrew: {} {}\n\n{}\n\nTask: {}\n",
            task.kind,
            task.targets.join(" "),
            task.description,
            task.id
        );
        let result = match repo.apply_and_commit(&patch, &message).await? {
            Applied::Committed { commit } => ApplyResult {
                task: task.id.to_string(),
                result: "applied",
                commit: Some(commit),
                conflicts: Vec::new(),
            },
            Applied::AlreadyPresent => ApplyResult {
                task: task.id.to_string(),
                result: "already_present",
                commit: None,
                conflicts: Vec::new(),
            },
            Applied::Conflict { files, detail } => {
                if !json {
                    output::message(&format!(
                        "{}: conflict, not applied:\n  {}",
                        task.id,
                        detail.replace('\n', "\n  ")
                    ));
                }
                ApplyResult {
                    task: task.id.to_string(),
                    result: "conflict",
                    commit: None,
                    conflicts: files,
                }
            }
        };
        results.push(result);
    }

    let conflicts = results.iter().filter(|r| r.result == "conflict").count();
    if json {
        output::json(&results);
    } else {
        for r in &results {
            let detail = match r.result {
                "applied" => format!("applied as {}", r.commit.as_deref().unwrap_or("?")),
                "already_present" => "already on the branch".to_string(),
                _ => format!("CONFLICT in {}", r.conflicts.join(", ")),
            };
            output::line(&format!("{}  {detail}", r.task));
        }
        let applied = results.iter().filter(|r| r.result == "applied").count();
        output::message(&format!(
            "{applied} applied onto {branch}, {conflicts} conflicted, {} already present",
            results.len() - applied - conflicts
        ));
    }
    Ok(if conflicts == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
