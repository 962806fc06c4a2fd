//! `pitcrew report`: one line per task — outcome, model, rounds, cost, quality, coverage
//! gained, cache hits — as Markdown or JSON.

use std::process::ExitCode;

use pitcrew_core::{Attempt, TaskFilter, TaskStatus};
use pitcrew_validate::{Evidence, ValidationReport};
use serde::Serialize;

use crate::cli::ReportFormat;
use crate::context::Context;
use crate::output;

#[derive(Debug, Serialize)]
struct TaskLine {
    task: String,
    kind: String,
    targets: Vec<String>,
    outcome: TaskStatus,
    model: Option<String>,
    attempts: usize,
    iterations: usize,
    cost_usd: f64,
    quality: Option<f64>,
    lines_covered: usize,
    cache_hits: u64,
    /// False when the generated code of an attempt ran unconfined
    /// (`validation.sandbox = "none"`).
    sandboxed: bool,
    /// What the last attempt's checks showed (tests, reruns, mutants, time per stage).
    evidence: Option<Evidence>,
    error: Option<String>,
}

#[derive(Debug, Default, Serialize)]
struct Totals {
    tasks: usize,
    completed: usize,
    failed: usize,
    possible_bugs: usize,
    unfinished: usize,
    cost_usd: f64,
    lines_covered: usize,
    cache_hits: u64,
    /// Tasks with an attempt whose generated code ran unconfined.
    unsandboxed: usize,
}

fn detail_count(attempt: &Attempt, pointer: &str) -> usize {
    attempt
        .details
        .pointer(pointer)
        .and_then(|v| v.as_array())
        .map_or(0, Vec::len)
}

/// The validation report recorded on `attempt`, when it has one.
pub(crate) fn validation_of(attempt: &Attempt) -> Option<ValidationReport> {
    attempt
        .details
        .get("validation")
        .and_then(|v| serde_json::from_value(v.clone()).ok())
}

/// Whether the validation of `attempt` ran generated code unconfined.
pub(crate) fn ran_unsandboxed(attempt: &Attempt) -> bool {
    attempt.details.pointer("/validation/confined") == Some(&serde_json::Value::Bool(false))
}

fn lines_covered(attempt: &Attempt) -> usize {
    attempt
        .details
        .pointer("/validation/coverage")
        .and_then(|v| v.as_array())
        .map_or(0, |gains| {
            gains
                .iter()
                .filter_map(|g| g["newly_covered"].as_array())
                .map(Vec::len)
                .sum()
        })
}

pub async fn report(
    ctx: &Context,
    run: Option<&str>,
    format: ReportFormat,
) -> anyhow::Result<ExitCode> {
    let store = ctx.store().await?;
    let tasks = store.list(&TaskFilter::default()).await?;
    let mut lines = Vec::new();
    let mut totals = Totals::default();
    for task in tasks {
        let attempts: Vec<Attempt> = store
            .attempts(task.id)
            .await?
            .into_iter()
            .filter(|a| run.is_none() || a.run_id.as_deref() == run)
            .collect();
        if run.is_some() && attempts.is_empty() {
            continue;
        }
        let last = attempts.last();
        let line = TaskLine {
            task: task.id.to_string(),
            kind: task.kind.to_string(),
            targets: task.targets.clone(),
            outcome: task.status,
            model: last.and_then(|a| a.model.clone()),
            attempts: attempts.len(),
            iterations: attempts
                .iter()
                .map(|a| detail_count(a, "/iterations"))
                .sum(),
            cost_usd: attempts.iter().filter_map(|a| a.usage.cost_usd).sum(),
            quality: last.and_then(|a| a.quality),
            lines_covered: last.map_or(0, lines_covered),
            cache_hits: attempts
                .iter()
                .filter_map(|a| a.details.get("cache_hits").and_then(|h| h.as_u64()))
                .sum(),
            sandboxed: !attempts.iter().any(ran_unsandboxed),
            evidence: last.and_then(validation_of).map(|r| r.evidence),
            error: task
                .last_error
                .as_deref()
                .and_then(|e| e.lines().next())
                .map(str::to_string),
        };
        totals.tasks += 1;
        match task.status {
            TaskStatus::Completed => totals.completed += 1,
            TaskStatus::Failed => totals.failed += 1,
            TaskStatus::PossibleBug => totals.possible_bugs += 1,
            _ => totals.unfinished += 1,
        }
        totals.cost_usd += line.cost_usd;
        totals.lines_covered += line.lines_covered;
        totals.cache_hits += line.cache_hits;
        totals.unsandboxed += usize::from(!line.sandboxed);
        lines.push(line);
    }
    if format == ReportFormat::Json {
        output::json(&serde_json::json!({"run": run, "totals": totals, "tasks": lines}));
        return Ok(ExitCode::SUCCESS);
    }
    let title = run.map_or_else(|| "all tasks".to_string(), |r| format!("run {r}"));
    output::line(&format!("# pitcrew report: {title}\n"));
    output::line(&format!(
        "{} tasks: {} completed, {} failed, {} possible bugs, {} unfinished. Cost ${:.4}; {} lines newly covered; {} cached replies.\n",
        totals.tasks,
        totals.completed,
        totals.failed,
        totals.possible_bugs,
        totals.unfinished,
        totals.cost_usd,
        totals.lines_covered,
        totals.cache_hits
    ));
    if totals.unsandboxed > 0 {
        output::line(&format!(
            "**NOT SANDBOXED**: the generated code of {} tasks ran unconfined \
             (validation.sandbox = \"none\"); their results may have been tampered with.\n",
            totals.unsandboxed
        ));
    }
    output::line(
        "| task | kind | targets | outcome | model | attempts | rounds | cost | quality | lines covered | mutants killed | note |",
    );
    output::line("|---|---|---|---|---|---|---|---|---|---|---|---|");
    for l in &lines {
        let mut note = match (&l.error, l.cache_hits) {
            (Some(e), _) => e.replace('|', "\\|"),
            (None, 0) => String::new(),
            (None, hits) => format!("{hits} cached repl{}", if hits == 1 { "y" } else { "ies" }),
        };
        if !l.sandboxed {
            note = format!("NOT SANDBOXED {note}").trim_end().to_string();
        }
        let mutants = l
            .evidence
            .as_ref()
            .filter(|e| !e.mutation.is_empty())
            .map_or_else(
                || "-".to_string(),
                |e| {
                    let (killed, tried) = e
                        .mutation
                        .iter()
                        .fold((0, 0), |(k, t), m| (k + m.killed, t + m.tried));
                    format!("{killed}/{tried}")
                },
            );
        output::line(&format!(
            "| {} | {} | {} | {} | {} | {} | {} | ${:.4} | {} | {} | {} | {} |",
            &l.task,
            l.kind,
            l.targets.join(" "),
            l.outcome,
            l.model.as_deref().unwrap_or("-"),
            l.attempts,
            l.iterations,
            l.cost_usd,
            l.quality.map_or_else(|| "-".into(), |q| format!("{q:.2}")),
            l.lines_covered,
            mutants,
            note
        ));
    }
    Ok(ExitCode::SUCCESS)
}
