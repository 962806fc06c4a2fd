//! Getting accepted results out: `diff` prints a task's patch, `apply` commits results onto
//! the user's current branch.

use std::process::ExitCode;

use pitcrew_core::{Task, TaskFilter, TaskStatus};
use pitcrew_engine::results::{accepted_patch, possible_bug_label, result_patch};
use pitcrew_runtime::Applied;
use pitcrew_store::Store;
use serde::Serialize;

use crate::context::Context;
use crate::output::{self, usage};

pub async fn diff(ctx: &Context, id: &str, json: bool) -> anyhow::Result<ExitCode> {
    let store = ctx.store().await?;
    let task = store.find(id).await?;
    let result = result_patch(&*store, &task).await?;
    if json {
        output::json(&result);
        return Ok(ExitCode::SUCCESS);
    }
    if result.possible_bug {
        output::message(&possible_bug_label(&task));
    }
    output::line(result.patch.trim_end());
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, Serialize)]
struct ApplyResult {
    task: String,
    result: &'static str,
    commit: Option<String>,
    conflicts: Vec<String>,
    /// Those of `conflicts` that are untracked files in the way.
    untracked: Vec<String>,
}

/// The message of the commit `apply` makes: the result commit's own (what it adds, the
/// evidence, the Task and Model lines), or when that commit is gone, one built from the store.
async fn apply_message(ctx: &Context, store: &dyn Store, task: &Task) -> anyhow::Result<String> {
    if let Some(commit) = &task.result_commit
        && let Some(message) = ctx.repo.commit_message(commit).await?
    {
        return Ok(message);
    }
    let model = store
        .attempts(task.id)
        .await?
        .into_iter()
        .rev()
        .find(|a| a.commit.is_some() && a.commit == task.result_commit)
        .and_then(|a| a.model)
        .unwrap_or_else(|| "unknown".into());
    Ok(format!(
        "pitcrew #{}: {} {}\n\n{}\n\nTask: {}\nModel: {model}\n",
        task.seq,
        task.kind,
        task.targets.join(" "),
        task.description,
        task.id
    ))
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
        let message = apply_message(ctx, &*store, task).await?;
        let result = match repo.apply_and_commit(&patch, &message).await? {
            Applied::Committed { commit } => {
                repo.mark_applied(&task.id.to_string(), &commit).await?;
                ApplyResult {
                    task: task.id.to_string(),
                    result: "applied",
                    commit: Some(commit),
                    conflicts: Vec::new(),
                    untracked: Vec::new(),
                }
            }
            Applied::AlreadyPresent => ApplyResult {
                task: task.id.to_string(),
                result: "already_present",
                commit: None,
                conflicts: Vec::new(),
                untracked: Vec::new(),
            },
            Applied::Conflict {
                files,
                untracked,
                detail,
            } => {
                if !json {
                    output::message(&format!(
                        "{}: conflict, not applied:\n  {}",
                        output::handle(task.seq),
                        detail.replace('\n', "\n  ")
                    ));
                }
                ApplyResult {
                    task: task.id.to_string(),
                    result: "conflict",
                    commit: None,
                    conflicts: files,
                    untracked,
                }
            }
        };
        results.push(result);
    }

    let conflicts = results.iter().filter(|r| r.result == "conflict").count();
    if json {
        output::json(&results);
    } else {
        for (r, task) in results.iter().zip(&tasks) {
            let detail = match r.result {
                "applied" => format!("applied as {}", r.commit.as_deref().unwrap_or("?")),
                "already_present" => "already on the branch".to_string(),
                _ => format!(
                    "CONFLICT in {}",
                    r.conflicts
                        .iter()
                        .map(|f| if r.untracked.contains(f) {
                            format!("{f} (an untracked file is in the way)")
                        } else {
                            f.clone()
                        })
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            };
            output::line(&format!("{}  {detail}", output::handle(task.seq)));
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
