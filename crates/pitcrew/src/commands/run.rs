//! `pitcrew run`: drain the queue with a pool of workers, print what happens, summarise, and
//! exit 0 only if every task this run finished completed.

use std::collections::BTreeSet;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use pitcrew_core::{TaskFilter, TaskStatus};
use pitcrew_engine::{Engine, EngineSettings, RunSummary};
use tokio::sync::{mpsc, watch};

use crate::cli::{RunArgs, WorkerArgs};
use crate::context::Context;
use crate::output::{self, usage};
use crate::progress::Progress;

fn default_worker_name() -> String {
    let host = std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into());
    format!("{host}:{}", std::process::id())
}

/// Checks, before claiming anything, that every preset the queued tasks use resolves and has
/// its API key: a missing key is a configuration error, not a hundred failed tasks.
async fn preflight(ctx: &Context, store: &dyn pitcrew_store::Store) -> anyhow::Result<()> {
    let queued = store
        .list(&TaskFilter {
            status: Some(TaskStatus::Queued),
            ..TaskFilter::default()
        })
        .await?;
    let presets: BTreeSet<Option<String>> = queued.into_iter().map(|t| t.model).collect();
    let mut problems = Vec::new();
    for preset in presets {
        match ctx.config.resolve_model(preset.as_deref()) {
            Ok(model) => {
                if let Err(e) = ctx.config.api_key(&model) {
                    problems.push(format!("preset `{}`: {e}", model.preset));
                }
            }
            Err(e) => problems.push(e.to_string()),
        }
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

/// First SIGINT/SIGTERM: stop claiming and let running tasks finish. Second: exit now (leases
/// then expire and the tasks are rescued by the next run).
fn handle_signals(stop: watch::Sender<bool>) {
    tokio::spawn(async move {
        let Ok(mut term) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        else {
            return;
        };
        for n in 0.. {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            if n == 0 {
                output::message(
                    "stopping: no new tasks are claimed; running ones finish (signal again to abort)",
                );
                let _ = stop.send(true);
            } else {
                output::message(
                    "aborted; unfinished tasks return to the queue when their leases expire",
                );
                std::process::exit(130);
            }
        }
    });
}

/// Runs the engine with the configured settings until it stops; prints events as they come.
async fn drive(
    ctx: &Context,
    workers: Option<u32>,
    name: Option<String>,
    forever: bool,
) -> anyhow::Result<RunSummary> {
    let config = &ctx.config.config;
    let workers = workers.unwrap_or(config.workers.count);
    if workers == 0 {
        return Err(usage("--workers must be at least 1"));
    }
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
    };
    let stats = store.stats().await?;
    let pending = stats.count(TaskStatus::Queued) + stats.count(TaskStatus::Running);
    let engine = Arc::new(Engine::new(store, ctx.config.clone(), settings)?);
    let (events_tx, mut events_rx) = mpsc::unbounded_channel();
    let (stop_tx, stop_rx) = watch::channel(false);
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
    Ok(result?)
}

pub async fn run(ctx: &Context, args: RunArgs) -> anyhow::Result<ExitCode> {
    let summary = drive(ctx, args.workers, args.name, args.forever).await?;
    if args.format.json {
        output::json(&summary);
    } else {
        output::line(&format!(
            "{} completed, {} failed ({} retried, {} leases lost, {} rescued)",
            summary.completed, summary.failed, summary.retried, summary.lease_lost, summary.rescued
        ));
    }
    Ok(if summary.failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// A worker serves the queue until stopped; task failures are the tasks' business, so it
/// exits 0 after a clean stop.
pub async fn worker(ctx: &Context, args: WorkerArgs) -> anyhow::Result<ExitCode> {
    let summary = drive(ctx, args.workers, args.name, true).await?;
    output::message(&format!(
        "worker stopped: {} completed, {} failed, {} retried, {} leases lost, {} rescued",
        summary.completed, summary.failed, summary.retried, summary.lease_lost, summary.rescued
    ));
    Ok(ExitCode::SUCCESS)
}
