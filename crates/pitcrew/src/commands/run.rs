//! `pitcrew run` drains the queue with a pool of workers and exits 0 only if every task it
//! finished completed; `pitcrew worker` serves the queue until stopped.

use std::collections::BTreeSet;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use pitcrew_core::{TaskFilter, TaskStatus};
use pitcrew_engine::{Engine, EngineSettings, RunSummary, Stop};
use pitcrew_llm::{Complexity, Requirements};
use tokio::sync::{mpsc, watch};

use crate::cli::{EngineFlags, RunArgs, WorkerArgs};
use crate::context::Context;
use crate::output::{self, usage};
use crate::progress::Progress;
use crate::signals;

fn default_worker_name() -> String {
    let host = std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into());
    format!("{host}:{}", std::process::id())
}

/// Checks, before claiming anything, that every queued task has at least one model it can
/// use (its preset known, a provider with its key): a missing key is a configuration error,
/// not a hundred failed tasks.
async fn preflight(ctx: &Context, store: &dyn pitcrew_store::Store) -> anyhow::Result<()> {
    let queued = store
        .list(&TaskFilter {
            status: Some(TaskStatus::Queued),
            ..TaskFilter::default()
        })
        .await?;
    let wanted: BTreeSet<(Option<String>, bool)> = queued
        .iter()
        .map(|t| (t.model.clone(), ctx.config.config.models.free_only))
        .collect();
    if wanted.is_empty() {
        return Ok(());
    }
    let router = pitcrew_engine::router(&ctx.config)?;
    let mut problems = Vec::new();
    for (preset, free_only) in wanted {
        if let Some(name) = &preset
            && let Err(e) = ctx.config.resolve(Some(name))
        {
            problems.push(e.to_string());
            continue;
        }
        let candidates = router.select(&Requirements {
            complexity: Complexity::Medium,
            max_output_tokens: ctx.config.config.models.max_tokens,
            free_only,
            prefer: preset
                .clone()
                .or_else(|| Some(ctx.config.config.models.default.clone())),
            ..Requirements::default()
        });
        if candidates.iter().any(|c| c.is_eligible()) {
            continue;
        }
        let mut reasons: Vec<String> = candidates
            .iter()
            .flat_map(|c| c.excluded.iter().map(|e| e.to_string()))
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        reasons.truncate(5);
        problems.push(format!(
            "no model can serve tasks preferring `{}`: {}",
            preset
                .as_deref()
                .unwrap_or(&ctx.config.config.models.default),
            reasons.join("; ")
        ));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(usage(format!(
            "queued tasks cannot run with this configuration:\n  {}",
            problems.join("\n  ")
        )))
    }
}

/// First SIGINT/SIGTERM: stop claiming and let running tasks finish. Second: abort the
/// running tasks (their sandboxed commands are killed and their scratch directories removed;
/// their leases expire and the next run takes them back).
fn handle_signals(stop: watch::Sender<Stop>) {
    tokio::spawn(async move {
        signals::first().await;
        output::message(
            "stopping: no new tasks are claimed; running ones finish (signal again to abort)",
        );
        let _ = stop.send(Stop::Finish);
        signals::first().await;
        output::message("aborting: running tasks go back to the queue (signal again to exit now)");
        let _ = stop.send(Stop::Abort);
        signals::first().await;
        output::message("exited; unfinished tasks return to the queue when their leases expire");
        std::process::exit(130);
    });
}

/// Runs the engine until it stops; shows its events as they come. Returns the run's id too.
async fn drive(
    ctx: &Context,
    workers: Option<u32>,
    name: Option<String>,
    forever: bool,
    flags: &EngineFlags,
    follow: Option<String>,
) -> anyhow::Result<(RunSummary, String)> {
    let workers = workers.unwrap_or(ctx.config.config.workers.count);
    if workers == 0 {
        return Err(usage("--workers must be at least 1"));
    }
    let mut loaded = ctx.config.clone();
    if let Some(budget) = flags.budget {
        if budget.is_nan() || budget <= 0.0 {
            return Err(usage("--budget must be a positive number of USD"));
        }
        loaded.config.budget.per_run_usd = budget;
    }
    let config = &loaded.config;
    // Refuse before claiming anything when generated code could not be confined.
    pitcrew_validate::preflight(&config.validation)
        .await
        .map_err(|e| usage(e.to_string()))?;
    let store = ctx.store().await?;
    preflight(ctx, &*store).await?;
    let settings = EngineSettings {
        workers,
        worker_name: name.unwrap_or_else(default_worker_name),
        lease_ttl: Duration::from_secs(config.workers.lease_ttl_secs),
        task_timeout: Duration::from_secs(config.workers.task_timeout_secs),
        retry_backoff: Duration::from_secs_f64(config.workers.retry_backoff_secs),
        forever,
        poll_interval: Duration::from_secs(if ctx.store_notifies() { 10 } else { 1 }),
        shutdown_grace: Duration::from_secs(config.workers.shutdown_grace_secs),
        cache: flags.cache,
        keep_worktrees: flags.keep_worktrees,
        follow: follow.map(|f| f.to_ascii_lowercase()),
    };
    let stats = store.stats().await?;
    let pending = stats.count(TaskStatus::Queued) + stats.count(TaskStatus::Running);
    let engine = Arc::new(Engine::new(store, &loaded, settings)?);
    let run_id = engine.run_id().to_string();
    let (events_tx, mut events_rx) = mpsc::unbounded_channel();
    let (stop_tx, stop_rx) = watch::channel(Stop::Run);
    handle_signals(stop_tx);
    let printer = tokio::spawn(async move {
        let mut progress = Progress::new(pending);
        let mut ticker = tokio::time::interval(Duration::from_secs(5));
        loop {
            tokio::select! {
                event = events_rx.recv() => match event {
                    Some(event) => progress.event(&event),
                    None => break,
                },
                _ = ticker.tick() => progress.tick(),
            }
        }
        progress.finish();
    });
    let result = engine.run(events_tx, stop_rx).await;
    let _ = printer.await;
    Ok((result?, run_id))
}

pub async fn run(ctx: &Context, args: RunArgs) -> anyhow::Result<ExitCode> {
    let (summary, run_id) = drive(
        ctx,
        args.workers,
        args.name,
        args.forever,
        &args.engine,
        args.follow,
    )
    .await?;
    if args.format.json {
        let mut json = serde_json::to_value(summary)?;
        json["run_id"] = run_id.into();
        output::json(&json);
    } else {
        output::line(&format!(
            "{} completed, {} failed, {} possible bugs ({} retried, {} leases lost, {} rescued, {} given back), ${:.4} spent",
            summary.completed,
            summary.failed,
            summary.possible_bugs,
            summary.retried,
            summary.lease_lost,
            summary.rescued,
            summary.released,
            summary.cost_usd
        ));
        if summary.budget_spent {
            output::line(
                "the run's budget is spent: unclaimed tasks wait in the queue for the next run",
            );
        }
        output::message(&format!(
            "run {run_id}: `pitcrew report --run {run_id}` summarises it"
        ));
    }
    Ok(if summary.failed == 0 && summary.possible_bugs == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// A worker serves the queue until stopped; task failures are the tasks' business, so it
/// exits 0 after a clean stop.
pub async fn worker(ctx: &Context, args: WorkerArgs) -> anyhow::Result<ExitCode> {
    let (summary, _) = drive(ctx, args.workers, args.name, true, &args.engine, None).await?;
    output::message(&format!(
        "worker stopped: {} completed, {} failed, {} possible bugs, {} retried, {} leases lost, {} rescued",
        summary.completed,
        summary.failed,
        summary.possible_bugs,
        summary.retried,
        summary.lease_lost,
        summary.rescued
    ));
    Ok(ExitCode::SUCCESS)
}
