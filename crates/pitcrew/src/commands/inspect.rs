//! Read-only commands: `status`, `list`, `queue`, `show`.

use std::process::ExitCode;

use pitcrew_core::{Attempt, Finding, Priority, Task, TaskFilter, TaskKind, TaskStatus};
use pitcrew_engine::results::{TaskDetail, TaskView, possible_bug_label, result_patch};
use pitcrew_validate::FailingTest;
use serde::Deserialize;
use serde_json::Value;

use crate::context::Context;
use crate::output;

fn time(t: chrono::DateTime<chrono::Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S").to_string()
}

/// `key  value` lines for a task.
fn task_lines(task: &Task, default_model: &str) -> Vec<(String, String)> {
    let mut lines = vec![
        (
            "task".into(),
            format!("{}  ({})", output::handle(task.seq), task.id),
        ),
        (
            "status".into(),
            format!(
                "{} (attempt {} of {})",
                task.status, task.attempts, task.max_attempts
            ),
        ),
        ("kind".into(), task.kind.to_string()),
        ("targets".into(), task.targets.join(" ")),
        ("priority".into(), task.priority.to_string()),
        (
            "model".into(),
            task.model
                .clone()
                .unwrap_or_else(|| format!("{default_model} (default)")),
        ),
        ("description".into(), task.description.clone()),
        ("base".into(), task.base_commit.clone()),
        ("created".into(), time(task.created_at)),
    ];
    if let Some(owner) = &task.lease_owner {
        lines.push(("worker".into(), owner.clone()));
    }
    if task.status == TaskStatus::Queued && task.run_at > chrono::Utc::now() {
        lines.push(("not before".into(), time(task.run_at)));
    }
    if let Some(finished) = task.finished_at {
        lines.push(("finished".into(), time(finished)));
    }
    if let Some(error) = &task.last_error {
        let kind = task
            .error_kind
            .map(|k| format!("{k}: "))
            .unwrap_or_default();
        lines.push(("error".into(), format!("{kind}{error}")));
    }
    if let Some(commit) = &task.result_commit {
        lines.push((
            "result".into(),
            format!("branch {} (commit {commit})", task.id.branch_name()),
        ));
    }
    lines
}

fn print_lines(lines: &[(String, String)]) {
    let width = lines.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    for (key, value) in lines {
        let mut parts = value.lines();
        output::line(&format!("{key:<width$}  {}", parts.next().unwrap_or("")));
        for rest in parts {
            output::line(&format!("{:<width$}  {rest}", ""));
        }
    }
}

pub async fn status(ctx: &Context, id: &str, json: bool) -> anyhow::Result<ExitCode> {
    let task = ctx.store().await?.find(id).await?;
    if json {
        output::json(&task);
    } else {
        print_lines(&task_lines(&task, &ctx.config.config.models.default));
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn list(
    ctx: &Context,
    status: Option<TaskStatus>,
    kind: Option<TaskKind>,
    limit: Option<u32>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let tasks = ctx
        .store()
        .await?
        .list(&TaskFilter {
            status,
            kind,
            limit,
            after_seq: None,
        })
        .await?;
    // Which tasks `apply` committed here (refs/pitcrew/applied/<id>), in one git call.
    let applied = ctx.repo.applied().await?;
    if json {
        let tasks: Vec<TaskView> = tasks
            .into_iter()
            .map(|t| TaskView::new(t, &applied))
            .collect();
        output::json(&tasks);
        return Ok(ExitCode::SUCCESS);
    }
    if tasks.is_empty() {
        output::message(if status.is_none() && kind.is_none() {
            super::EMPTY_QUEUE_HINT
        } else {
            "no tasks match"
        });
        return Ok(ExitCode::SUCCESS);
    }
    // The error column only when a task has one: the room goes to the description.
    let errors = tasks.iter().any(|t| t.last_error.is_some());
    let mut header = vec![
        "task",
        "status",
        "kind",
        "targets",
        "description",
        "priority",
        "attempts",
    ];
    if errors {
        header.push("error");
    }
    let mut table = output::table(&header);
    for t in &tasks {
        let mut row = vec![
            output::handle(t.seq),
            if applied.contains_key(&t.id.to_string()) {
                format!("{}, applied", t.status)
            } else {
                t.status.to_string()
            },
            t.kind.to_string(),
            t.targets.join(" "),
            output::truncate(&t.description, 40),
            t.priority.to_string(),
            format!("{}/{}", t.attempts, t.max_attempts),
        ];
        if errors {
            row.push(output::truncate(t.last_error.as_deref().unwrap_or(""), 60));
        }
        table.add_row(row);
    }
    output::keep_whole(&mut table, &[0, 1, 2, 5, 6]);
    output::print_table(&table);
    Ok(ExitCode::SUCCESS)
}

pub async fn queue(ctx: &Context, json: bool) -> anyhow::Result<ExitCode> {
    let stats = ctx.store().await?.stats().await?;
    if json {
        output::json(&stats.summary());
        return Ok(ExitCode::SUCCESS);
    }
    let mut header = vec!["status"];
    header.extend(Priority::ALL.iter().map(|p| p.as_str()));
    header.push("total");
    let mut table = output::table(&header);
    for status in TaskStatus::ALL {
        let mut row = vec![status.to_string()];
        for priority in Priority::ALL {
            let n = stats
                .counts
                .iter()
                .find(|(s, p, _)| s == status && p == priority)
                .map_or(0, |(_, _, n)| *n);
            row.push(n.to_string());
        }
        row.push(stats.count(*status).to_string());
        table.add_row(row);
    }
    output::print_table(&table);
    Ok(ExitCode::SUCCESS)
}

fn attempt_table(attempts: &[Attempt]) -> comfy_table::Table {
    let mut table = output::table(&[
        "#",
        "outcome",
        "worker",
        "model",
        "tokens in/out",
        "cost",
        "latency",
        "error",
    ]);
    for a in attempts {
        table.add_row(vec![
            a.number.to_string(),
            a.outcome.to_string(),
            a.worker.clone(),
            a.model.clone().unwrap_or_default(),
            format!("{}/{}", a.usage.tokens_in, a.usage.tokens_out),
            a.usage
                .cost_usd
                .map_or_else(|| "-".into(), |c| format!("${c:.4}")),
            a.latency_ms
                .map_or_else(|| "-".into(), |l| format!("{:.1}s", l as f64 / 1000.0)),
            a.error_kind.map(|k| k.to_string()).unwrap_or_default(),
        ]);
    }
    output::keep_whole(&mut table, &[0, 1, 4, 5, 6]);
    table
}

/// The evidence card of an attempt, and the tests removed from its result because they
/// failed against the code.
fn print_evidence(attempt: &Attempt) {
    if let Some(report) = super::report::validation_of(attempt) {
        output::line(&format!("\nevidence (attempt {}):", attempt.number));
        for line in report.card() {
            output::line(&format!("  {line}"));
        }
    }
    let bugs = attempt
        .details
        .get("possible_bugs")
        .and_then(|b| serde_json::from_value::<Vec<FailingTest>>(b.clone()).ok())
        .unwrap_or_default();
    if !bugs.is_empty() {
        output::line(
            "\nremoved from the result: tests that fail against the code (a bug in the code, or \
             a wrong expectation — judge them):",
        );
        for bug in bugs {
            output::line(&format!("  {}", bug.test));
            for line in bug.failure.lines() {
                output::line(&format!("      {line}"));
            }
        }
    }
}

pub async fn show(ctx: &Context, id: &str, diff: bool, json: bool) -> anyhow::Result<ExitCode> {
    let store = ctx.store().await?;
    let task = store.find(id).await?;
    let mut attempts = store.attempts(task.id).await?;
    let patch = result_patch(&*store, &task).await.ok();
    let applied = ctx.repo.applied().await?;
    if json {
        if !diff {
            attempts.iter_mut().for_each(|a| a.patch = None);
        }
        output::json(&TaskDetail {
            task: TaskView::new(task, &applied),
            attempts,
        });
        return Ok(ExitCode::SUCCESS);
    }
    let mut lines = task_lines(&task, &ctx.config.config.models.default);
    if let Some(commit) = applied.get(&task.id.to_string()) {
        lines.push(("applied".into(), format!("as commit {commit}")));
    }
    print_lines(&lines);
    if !attempts.is_empty() {
        output::line("");
        output::print_table(&attempt_table(&attempts));
    }
    if let Some(last) = attempts.last() {
        print_evidence(last);
    }
    for a in attempts
        .iter()
        .filter(|a| super::report::ran_unsandboxed(a))
    {
        output::line(&format!(
            "attempt {}: NOT SANDBOXED — its generated code ran unconfined \
             (validation.sandbox = \"none\"); the result may have been tampered with",
            a.number
        ));
    }
    for a in &attempts {
        print_rounds(a);
    }
    if diff {
        match patch {
            Some(result) => {
                output::line("");
                if result.possible_bug {
                    output::line(&format!("# {}", possible_bug_label(&task)));
                }
                output::line(result.patch.trim_end());
            }
            None => output::message("no result yet, so no patch to show"),
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// One round of an attempt as recorded in its details.
#[derive(Debug, Deserialize)]
struct Round {
    number: u32,
    model: Option<String>,
    #[serde(default)]
    cache_hit: bool,
    outcome: String,
    #[serde(default)]
    findings: Vec<Finding>,
}

/// Every round of `attempt`: its number, model and outcome, then its findings. An attempt
/// that ended before any round shows its own findings.
fn print_rounds(attempt: &Attempt) {
    let rounds: Vec<Round> = attempt
        .details
        .get("iterations")
        .and_then(|r| serde_json::from_value(r.clone()).ok())
        .unwrap_or_default();
    if rounds.is_empty() && attempt.findings.is_empty() {
        return;
    }
    output::line(&format!("\nattempt {}:", attempt.number));
    print_runtime(attempt);
    if rounds.is_empty() {
        print_findings(&attempt.findings, "  ");
    }
    for round in &rounds {
        let cached = if round.cache_hit {
            " (cached reply)"
        } else {
            ""
        };
        output::line(&format!(
            "  round {}  {}  {}{cached}",
            round.number,
            round.model.as_deref().unwrap_or("-"),
            round.outcome.replace('_', " ")
        ));
        print_findings(&round.findings, "    ");
    }
}

/// For an external agent: which runtime, the gateway's requests, each run's command line
/// and end, and the last lines of its transcript (`--json` has all of it).
fn print_runtime(attempt: &Attempt) {
    let Some(runtime) = attempt.details.get("runtime") else {
        return;
    };
    let text = |v: &Value| v.as_str().unwrap_or("-").to_string();
    output::line(&format!(
        "  runtime {} ({}), {} model request(s) through the gateway",
        text(&runtime["name"]),
        text(&runtime["kind"]),
        runtime["requests"].as_u64().unwrap_or(0)
    ));
    for refused in runtime["refused"].as_array().into_iter().flatten() {
        output::line(&format!("    refused: {}", text(refused)));
    }
    for run in runtime["runs"].as_array().into_iter().flatten() {
        output::line(&format!(
            "  run {}  {}  exit {}  {:.1}s",
            run["round"],
            text(&run["outcome"]),
            run["exit_code"]
                .as_i64()
                .map_or_else(|| "-".to_string(), |c| c.to_string()),
            run["duration_ms"].as_f64().unwrap_or(0.0) / 1000.0
        ));
    }
    let transcript = runtime["transcript"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    const TAIL: usize = 8;
    for entry in transcript
        .iter()
        .skip(transcript.len().saturating_sub(TAIL))
    {
        let line: String = text(&entry["text"])
            .lines()
            .next()
            .unwrap_or_default()
            .chars()
            .take(120)
            .collect();
        output::line(&format!("    [{}] {line}", text(&entry["kind"])));
    }
}

fn print_findings(findings: &[Finding], indent: &str) {
    for finding in findings {
        let text = finding.to_string();
        let mut lines = text.lines();
        output::line(&format!(
            "{indent}{} {}",
            finding.severity,
            lines.next().unwrap_or("")
        ));
        for rest in lines {
            output::line(&format!("{indent}    {rest}"));
        }
    }
}
