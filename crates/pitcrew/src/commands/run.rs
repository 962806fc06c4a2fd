//! `pitcrew run` drains the queue with a pool of workers and exits 0 only if every task it
//! finished completed and its budget did not leave tasks queued; `pitcrew worker` serves the queue until stopped.

use std::collections::{BTreeSet, HashMap};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use pitcrew_config::ModelsConfig;
use pitcrew_core::{RunEnded, TaskFilter, TaskId, TaskStatus, WebhookEvent};
use pitcrew_engine::{Engine, EngineSettings, RunSummary, Stop};
use pitcrew_llm::{Complexity, Exclusion, Requirements};
use tokio::sync::{mpsc, watch};

use super::webhooks::{self, Webhooks};
use crate::cli::{EngineFlags, RunArgs, WorkerArgs};
use crate::context::Context;
use crate::output::{self, usage};
use crate::progress::Progress;
use crate::signals;

pub(super) fn default_worker_name() -> String {
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
    let mut missing_keys = BTreeSet::new();
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
        // Models outside the routing pool were never in play: their reasons are noise.
        let in_play: Vec<_> = candidates
            .iter()
            .filter(|c| !c.excluded.contains(&Exclusion::NotInPool))
            .collect();
        let mut reasons: Vec<String> = in_play
            .iter()
            .flat_map(|c| c.excluded.iter().map(|e| e.to_string()))
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        reasons.truncate(5);
        for candidate in &in_play {
            for exclusion in &candidate.excluded {
                if let Exclusion::MissingKey { variable } = exclusion {
                    missing_keys.insert((variable.clone(), candidate.provider.clone()));
                }
            }
        }
        // A preset the user never chose (pitcrew's own default) is not worth naming.
        let chosen = preset.as_deref().or_else(|| {
            (ctx.config.config.models.default != ModelsConfig::default().default)
                .then_some(ctx.config.config.models.default.as_str())
        });
        problems.push(match chosen {
            Some(name) => format!(
                "no model can serve tasks preferring `{name}`: {}",
                reasons.join("; ")
            ),
            None => format!("no model can serve them: {}", reasons.join("; ")),
        });
    }
    if problems.is_empty() {
        return Ok(());
    }
    if !missing_keys.is_empty() {
        let keys: Vec<String> = missing_keys
            .iter()
            .map(|(variable, provider)| format!("{variable} (provider `{provider}`)"))
            .collect();
        let elsewhere = match &ctx.config.path {
            Some(path) => format!("or point {} at another provider", path.display()),
            None => "or run `pitcrew init` to write a pitcrew.toml and point it at another \
                     provider (Ollama, vLLM, llama.cpp, …)"
                .to_string(),
        };
        problems.push(format!(
            "set {} in the environment or in .env, {elsewhere}",
            match keys.as_slice() {
                [one] => one.clone(),
                many => format!("one of {}", many.join(", ")),
            }
        ));
    }
    Err(usage(format!(
        "queued tasks cannot run with this configuration:\n  {}",
        problems.join("\n  ")
    )))
}

/// First SIGINT/SIGTERM: stop claiming and let running tasks finish. Second: abort the
/// running tasks (their sandboxed commands are killed and their scratch directories removed;
/// their leases expire and the next run takes them back).
pub(super) fn handle_signals(stop: watch::Sender<Stop>) {
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

/// What a run did, and what it left.
pub(super) struct Driven {
    pub(super) summary: RunSummary,
    pub(super) run_id: String,
    /// Tasks waiting in the queue when the run ended.
    pub(super) queued: u64,
    /// Whether a signal stopped the run.
    pub(super) stopped: bool,
    pub(super) started_at: DateTime<Utc>,
    /// The webhook dispatcher, still delivering: the caller says when it is to finish.
    pub(super) webhooks: Option<Webhooks>,
    /// How far signals have told the process to stop.
    pub(super) stop: watch::Receiver<Stop>,
}

/// The id of the task `--follow` names (its handle, id or prefix); a prefix no task has yet
/// is kept as given, for a task submitted while the run goes on.
async fn followed(store: &dyn pitcrew_store::Store, given: &str) -> anyhow::Result<String> {
    match store.find(given).await {
        Ok(task) => Ok(task.id.to_string()),
        Err(pitcrew_store::StoreError::NotFound(_))
            if !given.trim().starts_with('#')
                && !given.trim().starts_with(|c: char| ('1'..='9').contains(&c)) =>
        {
            Ok(given.trim().to_ascii_lowercase())
        }
        Err(e) => Err(usage(format!("--follow: {e}"))),
    }
}

/// The run `--run` names, checked: it becomes a key in the store and a word in reports.
fn run_name(flags: &EngineFlags) -> anyhow::Result<Option<String>> {
    let Some(name) = flags.run_name.as_deref().map(str::trim) else {
        return Ok(None);
    };
    let valid = |c: char| c.is_ascii_alphanumeric() || "-_.:".contains(c);
    if name.is_empty() || name.len() > 100 || !name.chars().all(valid) {
        return Err(usage(format!(
            "--run `{name}`: a run's name is 1–100 letters, digits, `-`, `_`, `.` or `:`"
        )));
    }
    Ok(Some(name.to_string()))
}

/// The numbers in the store of the tasks a run may touch (queued and running), by id.
async fn handles(store: &dyn pitcrew_store::Store) -> anyhow::Result<HashMap<TaskId, u64>> {
    let mut handles = HashMap::new();
    for status in [TaskStatus::Queued, TaskStatus::Running] {
        let tasks = store
            .list(&TaskFilter {
                status: Some(status),
                ..TaskFilter::default()
            })
            .await?;
        handles.extend(tasks.into_iter().map(|t| (t.id, t.seq)));
    }
    Ok(handles)
}

/// What `run`, `worker` and `serve --workers` run: the store, the configuration with the
/// command line's budget, and the engine's settings, all checked before anything is claimed.
pub(super) struct EngineSetup {
    pub(super) store: Arc<dyn pitcrew_store::Store>,
    pub(super) config: pitcrew_config::LoadedConfig,
    pub(super) settings: EngineSettings,
}

/// Checks what an engine of `workers` (default: workers.count) needs — the sandbox, a model
/// for every queued task, the flags — and opens the store.
pub(super) async fn engine_setup(
    ctx: &Context,
    workers: Option<u32>,
    name: Option<String>,
    forever: bool,
    flags: &EngineFlags,
) -> anyhow::Result<EngineSetup> {
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
        wait_deadline: Duration::from_secs(config.workers.wait_deadline_secs),
        follow: None,
        run_name: run_name(flags)?,
    };
    Ok(EngineSetup {
        store,
        config: loaded,
        settings,
    })
}

/// Runs the engine until it stops; shows its events as they come.
pub(super) async fn drive(
    ctx: &Context,
    workers: Option<u32>,
    name: Option<String>,
    forever: bool,
    flags: &EngineFlags,
    follow: Option<String>,
) -> anyhow::Result<Driven> {
    let EngineSetup {
        store,
        config: loaded,
        mut settings,
    } = engine_setup(ctx, workers, name, forever, flags).await?;
    if let Some(given) = follow {
        settings.follow = Some(followed(&*store, &given).await?.to_ascii_lowercase());
    }
    let started_at = Utc::now();
    // Beside the workers, never in their way: deliveries wait in the store, not for them.
    let webhooks = webhooks::start(ctx, &store, &settings.worker_name)?;
    let workers = settings.workers;
    let stats = store.stats().await?;
    let pending = stats.count(TaskStatus::Queued) + stats.count(TaskStatus::Running);
    let known = handles(&*store).await?;
    let engine = Arc::new(Engine::new(Arc::clone(&store), &loaded, settings)?);
    let run_id = engine.run_id().to_string();
    let (events_tx, mut events_rx) = mpsc::unbounded_channel();
    let (stop_tx, stop_rx) = watch::channel(Stop::Run);
    let stop_seen = stop_rx.clone();
    handle_signals(stop_tx);
    let lookup = Arc::clone(&store);
    let printer = tokio::spawn(async move {
        let mut progress = Progress::new(pending, workers, known);
        // Often enough for the ETA to count down on a terminal.
        let mut ticker = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                event = events_rx.recv() => match event {
                    Some(event) => {
                        // A task submitted during the run: learn its handle.
                        if let Some(task) = crate::progress::task_of(&event)
                            && !progress.knows(&task)
                            && let Ok(found) = lookup.find(&task.to_string()).await
                        {
                            progress.learn(task, found.seq);
                        }
                        progress.event(&event);
                    }
                    None => break,
                },
                _ = ticker.tick() => progress.tick(),
            }
        }
        progress.finish();
    });
    let result = engine.run(events_tx, stop_rx).await;
    let _ = printer.await;
    let summary = result?;
    let stopped = *stop_seen.borrow() != Stop::Run;
    let queued = store.stats().await?.count(TaskStatus::Queued);
    Ok(Driven {
        summary,
        run_id,
        queued,
        stopped,
        started_at,
        webhooks,
        stop: stop_seen,
    })
}

/// What a run ended with, in one line.
pub(super) fn summary_line(summary: &RunSummary) -> String {
    format!(
        "{} completed, {} failed, {} possible bugs ({} retried, {} leases lost, {} rescued, {} given back), ${:.4} spent",
        summary.completed,
        summary.failed,
        summary.possible_bugs,
        summary.retried,
        summary.lease_lost,
        summary.rescued,
        summary.released,
        summary.cost_usd
    )
}

pub async fn run(ctx: &Context, args: RunArgs) -> anyhow::Result<ExitCode> {
    let Driven {
        summary,
        run_id,
        queued,
        stopped,
        started_at,
        webhooks,
        stop,
    } = drive(
        ctx,
        args.workers,
        args.name,
        args.forever,
        &args.engine,
        args.follow,
    )
    .await?;
    let idle = summary.completed
        + summary.failed
        + summary.possible_bugs
        + summary.retried
        + summary.lease_lost
        + summary.rescued
        + summary.released
        == 0;
    if args.format.json {
        let mut json = serde_json::to_value(summary)?;
        json["run_id"] = run_id.clone().into();
        json["queued"] = queued.into();
        json["stopped"] = stopped.into();
        output::json(&json);
    } else {
        output::line(&summary_line(&summary));
        if summary.budget_spent {
            output::line(
                "the run's budget is spent: unclaimed tasks wait in the queue for the next run",
            );
        }
        if queued > 0 {
            output::line(&format!(
                "{queued} {} still queued: `pitcrew run` resumes {}",
                if queued == 1 { "task" } else { "tasks" },
                if queued == 1 { "it" } else { "them" },
            ));
        }
        if idle && queued == 0 && !stopped {
            output::message(super::EMPTY_QUEUE_HINT);
        } else {
            output::message(&format!(
                "run {run_id}: `pitcrew report --run {run_id}` summarises it"
            ));
        }
    }
    if let Some(webhooks) = webhooks {
        let ended = RunEnded {
            id: run_id,
            started_at,
            finished_at: Utc::now(),
            completed: summary.completed,
            failed: summary.failed,
            possible_bugs: summary.possible_bugs,
            retried: summary.retried,
            queued,
            cost_usd: summary.cost_usd,
            budget_spent: summary.budget_spent,
            stopped,
        };
        webhooks.announce(&WebhookEvent::run_finished(&ended)).await;
        webhooks.finish(stop).await;
    }
    // A run the budget stopped short did not do what it was asked.
    let cut_short = summary.budget_spent && queued > 0;
    Ok(
        if summary.failed == 0 && summary.possible_bugs == 0 && !cut_short {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        },
    )
}

/// A worker serves the queue until stopped; task failures are the tasks' business, so it
/// exits 0 after a clean stop.
pub async fn worker(ctx: &Context, args: WorkerArgs) -> anyhow::Result<ExitCode> {
    let Driven {
        summary,
        webhooks,
        stop,
        ..
    } = drive(ctx, args.workers, args.name, true, &args.engine, None).await?;
    if let Some(webhooks) = webhooks {
        webhooks.finish(stop).await;
    }
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
