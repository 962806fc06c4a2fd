//! `pitcrew submit`: one task from flags, or a batch from a .jsonl or .toml file. Every entry
//! is checked (kind, targets at the base commit, preset, paths) before anything is stored, and
//! the batch is stored in one transaction: all tasks or none.

use std::path::Path;
use std::process::ExitCode;

use pitcrew_config::batch::{BatchEntry, BatchFormat, TaskSpec, parse_batch};
use pitcrew_core::NewTask;
use pitcrew_engine::submission::{InvalidTask, SubmissionChecker, batch_rejected};
use pitcrew_store::Submitted;

use crate::cli::SubmitArgs;
use crate::context::Context;
use crate::output::{self, usage};

/// Reads a batch file into entries, or the one problem that stops reading it at all.
fn read_batch(path: &Path) -> Result<Vec<BatchEntry>, String> {
    let name = path.display().to_string();
    let extension = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    let format = BatchFormat::from_extension(&name, extension)?;
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {name}: {e}"))?;
    parse_batch(&name, &text, format)
}

/// The tasks of the batch `file`, every entry checked: all of them, or the problems of every
/// bad entry.
async fn checked_batch(
    checker: &mut SubmissionChecker<'_>,
    file: &Path,
) -> anyhow::Result<Vec<NewTask>> {
    let entries = read_batch(file).map_err(|problem| usage(batch_rejected(&[problem])))?;
    if entries.is_empty() {
        return Err(usage(format!("{}: no tasks in the file", file.display())));
    }
    checker.check_all(entries).await.map_err(|problems| {
        let problems: Vec<String> = problems
            .into_iter()
            .map(|(line, reason)| format!("{}:{line}: {reason}", file.display()))
            .collect();
        usage(batch_rejected(&problems))
    })
}

/// Checks tasks against the repository; targets are relative to the current directory.
fn checker(ctx: &Context, repo_url: Option<String>) -> SubmissionChecker<'_> {
    SubmissionChecker::new(&ctx.repo, &ctx.config, &ctx.cwd, repo_url)
}

/// Checks the batch `file` and stores its tasks in one transaction (all or none), as
/// `pitcrew submit --file` does; the tasks and what the store made of them.
pub(super) async fn submit_file(
    ctx: &Context,
    file: &Path,
) -> anyhow::Result<(Vec<NewTask>, Vec<Submitted>)> {
    let tasks = checked_batch(&mut checker(ctx, ctx.repo_url().await), file).await?;
    let submitted = ctx.store().await?.submit(&tasks).await?;
    Ok((tasks, submitted))
}

pub async fn submit(ctx: &Context, args: SubmitArgs) -> anyhow::Result<ExitCode> {
    let (tasks, submitted) = if let Some(file) = &args.file {
        submit_file(ctx, file).await?
    } else {
        let metadata = args
            .metadata
            .as_deref()
            .map(serde_json::from_str)
            .transpose()
            .map_err(|e| usage(format!("--metadata is not valid JSON: {e}")))?;
        let spec = TaskSpec {
            kind: args.kind.expect("clap requires --kind or --file"),
            target: None,
            targets: args.targets,
            description: args.description,
            priority: Some(args.priority),
            model: args.model,
            idempotency_key: args.idempotency_key,
            max_attempts: args.max_attempts,
            base: Some(args.base),
            metadata,
            prompt: args.prompt,
            complexity: args.complexity,
            runtime: args.runtime,
        };
        let task = checker(ctx, ctx.repo_url().await)
            .check(spec)
            .await
            .map_err(|InvalidTask(reason)| usage(reason))?;
        let submitted = ctx
            .store()
            .await?
            .submit(std::slice::from_ref(&task))
            .await?;
        (vec![task], submitted)
    };
    if args.format.json {
        output::json(&submitted);
    } else {
        print_submitted(&tasks, &submitted);
    }
    Ok(ExitCode::SUCCESS)
}

/// A line per task submitted (`#42  unit_test src/x.py  [normal]  (id)`), and how many were
/// new when there were several.
pub(super) fn print_submitted(tasks: &[NewTask], submitted: &[Submitted]) {
    for (task, result) in tasks.iter().zip(submitted) {
        let note = if result.deduplicated {
            " (already queued under this idempotency key)"
        } else {
            ""
        };
        output::line(&format!(
            "{}  {} {}  [{}]  ({}){note}",
            output::handle(result.seq),
            task.kind,
            task.targets.join(" "),
            task.priority,
            result.id
        ));
    }
    let new = submitted.iter().filter(|s| !s.deduplicated).count();
    if submitted.len() > 1 {
        output::message(&format!(
            "submitted {new} new task(s) of {}",
            submitted.len()
        ));
    }
}
