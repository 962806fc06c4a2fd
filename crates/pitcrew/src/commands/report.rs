//! `pitcrew report`: one line per task — outcome, model, rounds, cost, quality, coverage
//! gained, cache hits — as Markdown or JSON.

use std::collections::{BTreeMap, BTreeSet};
use std::process::ExitCode;

use pitcrew_core::{Attempt, TaskFilter, TaskStatus};
use pitcrew_validate::{CoverageGain, Evidence, ValidationReport};
use serde::Serialize;

use crate::cli::ReportFormat;
use crate::context::Context;
use crate::output::{self, usage};

#[derive(Debug, Serialize)]
struct TaskLine {
    task: String,
    /// The task's number in the store: its handle is `#seq`.
    seq: u64,
    kind: String,
    description: String,
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

/// The coverage gains recorded on `attempt`: per target, the lines its tests newly covered
/// and the target's statements.
fn coverage_gains(attempt: &Attempt) -> Vec<CoverageGain> {
    attempt
        .details
        .pointer("/validation/coverage")
        .and_then(|v| serde_json::from_value(v.clone()).ok())
        .unwrap_or_default()
}

fn lines_covered(attempt: &Attempt) -> usize {
    coverage_gains(attempt)
        .iter()
        .map(|g| g.newly_covered.len().min(g.statements))
        .sum()
}

/// What `attempts` cost, 0 when none reported a cost.
fn cost_of(attempts: &[Attempt]) -> f64 {
    pitcrew_metrics::total_cost(attempts.iter().map(|a| a.usage.cost_usd)).unwrap_or(0.0)
}

/// Lines newly covered across tasks: per target the union of every task's new lines (tasks
/// on one module cover many of the same lines), never more than the target's statements.
#[derive(Debug, Default)]
struct CoveredLines(BTreeMap<String, (BTreeSet<u32>, usize)>);

impl CoveredLines {
    fn add(&mut self, attempt: &Attempt) {
        for gain in coverage_gains(attempt) {
            let (lines, statements) = self.0.entry(gain.target).or_default();
            lines.extend(gain.newly_covered);
            *statements = (*statements).max(gain.statements);
        }
    }

    fn total(&self) -> usize {
        self.0
            .values()
            .map(|(lines, statements)| lines.len().min(*statements))
            .sum()
    }
}

/// The error for `--run` naming no run: which runs there are, newest first.
fn unknown_run(run: &str, runs: &BTreeMap<String, chrono::DateTime<chrono::Utc>>) -> anyhow::Error {
    let mut recent: Vec<(&String, &chrono::DateTime<chrono::Utc>)> = runs.iter().collect();
    recent.sort_by(|a, b| b.1.cmp(a.1));
    if recent.is_empty() {
        return usage(format!("no run `{run}`: nothing has run yet"));
    }
    let listed: Vec<String> = recent
        .iter()
        .take(10)
        .map(|(id, started)| format!("  {id}  (started {})", started.format("%Y-%m-%d %H:%M:%S")))
        .collect();
    usage(format!(
        "no run `{run}`; recent runs, newest first:\n{}",
        listed.join("\n")
    ))
}

/// What `report` shows: a line per task and the totals, for one run or every task.
#[derive(Debug, Serialize)]
pub(super) struct Report {
    run: Option<String>,
    totals: Totals,
    tasks: Vec<TaskLine>,
}

/// Reads the report of `run` (every task when `None`) from the store.
pub(super) async fn gather(ctx: &Context, run: Option<&str>) -> anyhow::Result<Report> {
    let store = ctx.store().await?;
    let tasks = store.list(&TaskFilter::default()).await?;
    let mut lines = Vec::new();
    let mut totals = Totals::default();
    let mut covered = CoveredLines::default();
    // Every run the store knows, with when it first started an attempt.
    let mut runs: BTreeMap<String, chrono::DateTime<chrono::Utc>> = BTreeMap::new();
    for task in tasks {
        let mut attempts: Vec<Attempt> = store.attempts(task.id).await?;
        for a in &attempts {
            if let Some(id) = &a.run_id {
                let started = runs.entry(id.clone()).or_insert(a.started_at);
                *started = (*started).min(a.started_at);
            }
        }
        attempts.retain(|a| run.is_none() || a.run_id.as_deref() == run);
        if run.is_some() && attempts.is_empty() {
            continue;
        }
        let last = attempts.last();
        let line = TaskLine {
            task: task.id.to_string(),
            seq: task.seq,
            kind: task.kind.to_string(),
            description: task.description.clone(),
            targets: task.targets.clone(),
            outcome: task.status,
            model: last.and_then(|a| a.model.clone()),
            attempts: attempts.len(),
            iterations: attempts
                .iter()
                .map(|a| detail_count(a, "/iterations"))
                .sum(),
            cost_usd: cost_of(&attempts),
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
        if let Some(last) = last {
            covered.add(last);
        }
        totals.cache_hits += line.cache_hits;
        totals.unsandboxed += usize::from(!line.sandboxed);
        lines.push(line);
    }
    if let Some(run) = run
        && !runs.contains_key(run)
    {
        return Err(unknown_run(run, &runs));
    }
    totals.lines_covered = covered.total();
    Ok(Report {
        run: run.map(str::to_string),
        totals,
        tasks: lines,
    })
}

pub async fn report(
    ctx: &Context,
    run: Option<&str>,
    format: ReportFormat,
) -> anyhow::Result<ExitCode> {
    let report = gather(ctx, run).await?;
    if format == ReportFormat::Json {
        output::json(&report);
    } else {
        print_markdown(&report);
    }
    Ok(ExitCode::SUCCESS)
}

/// The report as Markdown: a title, the totals, and a table row per task.
pub(super) fn print_markdown(report: &Report) {
    let Report { run, totals, tasks } = report;
    let title = run
        .as_deref()
        .map_or_else(|| "all tasks".to_string(), |r| format!("run {r}"));
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
        "| task | kind | targets | description | outcome | model | attempts | rounds | cost | quality | lines covered | mutants killed | note |",
    );
    output::line("|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for l in tasks {
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
            "| {} | {} | {} | {} | {} | {} | {} | {} | ${:.4} | {} | {} | {} | {} |",
            output::handle(l.seq),
            l.kind,
            l.targets.join(" "),
            output::truncate(&l.description, 40).replace('|', "\\|"),
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
}
