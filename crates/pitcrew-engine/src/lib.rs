//! The worker pool behind `pitcrew run` and `pitcrew worker`: N workers claim tasks from the
//! store, keep their leases alive, run the built-in agent in a fresh worktree per attempt,
//! and record each outcome with a write fenced by the lease. Accepted results become a commit
//! on `pitcrew/<task-id>` plus a stored patch. The router's health is shared through the
//! store, and the run stops claiming when its budget is spent. Progress is reported as
//! [`Event`]s; printing them is the caller's business.
//!
//! Around the pool, what the command line and the HTTP API both do with the queue it works:
//! [`submission`] checks tasks before they are queued, [`results`] reads what became of them,
//! [`models`] shows the models with their health and ranking.

mod attempt;
mod external;
mod fleet;
pub mod models;
pub mod results;
pub mod submission;
mod tidy;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pitcrew_config::LoadedConfig;
use pitcrew_core::{ErrorKind, Lease, ModelHealth, Task, TaskId, TaskStatus, Usage};
use pitcrew_llm::{ChatClient, Router};
use pitcrew_runtime::{
    AgentSettings, BuiltinAgent, ContextSettings, Repo, RepoIdentity, WorktreePool, locate_repo,
};
use pitcrew_store::{Disposition, Rescued, Store, StoreError};
use tokio::sync::{mpsc, watch};

/// How far a run has been told to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// Keep claiming tasks.
    Run,
    /// Claim nothing more; running tasks get the grace period to finish, then go back to
    /// the queue.
    Finish,
    /// Give running tasks back to the queue now: their sandboxed commands are killed and
    /// their scratch directories and worktrees removed.
    Abort,
}

/// How a run behaves (from the configuration and the command line).
#[derive(Debug, Clone)]
pub struct EngineSettings {
    pub workers: u32,
    /// Names this process in leases; each worker appends `/N`.
    pub worker_name: String,
    pub lease_ttl: Duration,
    pub task_timeout: Duration,
    /// First retry delay; doubles per attempt, with jitter.
    pub retry_backoff: Duration,
    /// Keep waiting for work when the queue is empty.
    pub forever: bool,
    /// Longest wait between looks at an idle queue (a store that signals new work wakes
    /// workers sooner).
    pub poll_interval: Duration,
    /// Reuse replies of identical earlier calls (`--cache`).
    pub cache: bool,
    /// After a stop, how long running tasks may take before they are given back to the queue.
    pub shutdown_grace: Duration,
    /// Leave each attempt's worktree in place (`--keep-worktrees`).
    pub keep_worktrees: bool,
    /// How long a task may keep waiting for reasons not its own, from its first such wait.
    pub wait_deadline: Duration,
    /// Send the generated text of tasks whose id starts with this as [`Event::Output`].
    pub follow: Option<String>,
    /// The run this process joins (`--run`): every worker started with the same name, on any
    /// machine sharing the store, shares one run budget and one report. `None`: a run of its
    /// own, with a new id.
    pub run_name: Option<String>,
}

/// What happened, as it happens.
#[derive(Debug, Clone)]
pub enum Event {
    Started {
        task: TaskId,
        attempt: u32,
        worker: String,
        what: String,
    },
    /// A round of generation began, or a model call started or failed.
    Progress {
        task: TaskId,
        message: String,
    },
    /// Generated text of a followed task, as it streams.
    Output {
        task: TaskId,
        text: String,
    },
    Finished {
        task: TaskId,
        attempt: u32,
        status: TaskStatus,
        /// The provider's id of the model whose reply was used.
        model: Option<String>,
        error: Option<String>,
        /// Set when the task went back to the queue.
        retry_in: Option<Duration>,
        branch: Option<String>,
        /// What the attempt spent, failed calls included.
        usage: Usage,
        iterations: usize,
    },
    /// The task was rescued or cancelled while this worker held it; its result is discarded.
    LeaseLost {
        task: TaskId,
        attempt: u32,
    },
    /// The run stopped and the grace period ran out: the task went back to the queue.
    Released {
        task: TaskId,
        attempt: u32,
    },
    Rescued(Rescued),
    /// The run's budget is spent: no more tasks are claimed.
    BudgetSpent {
        spent_usd: f64,
    },
    Warning(String),
}

/// What this run finished.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct RunSummary {
    pub completed: u32,
    pub failed: u32,
    pub possible_bugs: u32,
    /// Attempts that failed for a reason worth retrying; their tasks went back to the queue.
    pub retried: u32,
    /// Attempts whose lease was lost (rescued or cancelled elsewhere).
    pub lease_lost: u32,
    /// Expired leases of other workers this run took back.
    pub rescued: u32,
    /// Tasks given back to the queue when a stop's grace period ran out.
    pub released: u32,
    /// USD spent by this run's calls.
    pub cost_usd: f64,
    /// The run stopped claiming because its budget was spent.
    pub budget_spent: bool,
}

impl RunSummary {
    fn add(&mut self, other: RunSummary) {
        self.completed += other.completed;
        self.failed += other.failed;
        self.possible_bugs += other.possible_bugs;
        self.retried += other.retried;
        self.lease_lost += other.lease_lost;
        self.rescued += other.rescued;
        self.released += other.released;
        self.cost_usd += other.cost_usd;
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("the store failed repeatedly: {0}")]
    Store(#[from] StoreError),
    #[error("{0}")]
    Setup(String),
}

/// How an attempt's run ended, before anything is written.
enum Ending {
    Done(Box<attempt::AttemptEnd>),
    LeaseLost,
    Interrupted,
}

/// After this many store errors in a row a worker gives up (its tasks' leases will expire and
/// be rescued by the next run).
const MAX_STORE_ERRORS: u32 = 5;

#[derive(Debug)]
pub struct Engine {
    store: Arc<dyn Store>,
    agent: BuiltinAgent,
    settings: EngineSettings,
    /// Identifies this run's attempts (`pitcrew report --run`).
    run_id: String,
    /// Repositories already tidied by this run.
    tidied: Mutex<HashSet<PathBuf>>,
    /// The worktrees this run's attempts reuse.
    worktrees: WorktreePool,
    budget_announced: AtomicBool,
    /// A call failed because the run could not afford it (though not yet spent to the cent).
    budget_short: AtomicBool,
    /// What one task may spend (`budget.per_task_usd`), when limited.
    task_budget_usd: Option<f64>,
    /// Model health as last exchanged with the store, by model.
    shared_health: Mutex<HashMap<String, ModelHealth>>,
    /// `[repos]`: where this machine keeps the repositories tasks name.
    repos: BTreeMap<String, PathBuf>,
    /// The configuration: which runtime works a task, and the external ones.
    config: pitcrew_config::Config,
    /// The per-task model gateway external agents call, started when the first one runs.
    gateway: tokio::sync::OnceCell<pitcrew_gateway::Gateway>,
}

/// `1h 5m`, `3m 20s` or `45s`.
fn humantime(d: Duration) -> String {
    let s = d.as_secs();
    match (s / 3600, (s % 3600) / 60, s % 60) {
        (0, 0, s) => format!("{s}s"),
        (0, m, s) => format!("{m}m {s}s"),
        (h, m, _) => format!("{h}h {m}m"),
    }
}

/// Whether two snapshots say the same (the store stamps `updated_at` itself).
fn same_health(a: &ModelHealth, b: &ModelHealth) -> bool {
    ModelHealth {
        updated_at: b.updated_at,
        ..a.clone()
    } == *b
}

/// The router the configuration describes: its registry, providers and limits.
pub fn router(config: &LoadedConfig) -> Result<Router, EngineError> {
    let models = &config.config.models;
    let client = ChatClient::new(Duration::from_secs(models.request_timeout_secs))
        .map_err(|e| EngineError::Setup(e.to_string()))?
        .with_idle_timeout(Duration::from_secs(models.idle_timeout_secs));
    Ok(Router::new(
        config.registry.clone(),
        config.endpoints(),
        client,
        config.router_settings(),
    ))
}

impl Engine {
    pub fn new(
        store: Arc<dyn Store>,
        config: &LoadedConfig,
        settings: EngineSettings,
    ) -> Result<Self, EngineError> {
        let models = &config.config.models;
        let run_id = (settings.run_name.clone()).unwrap_or_else(|| TaskId::new().to_string());
        let router = router(config)?;
        // Every worker of the store counts rate limits, quotas and the run's budget there.
        router.share_with_fleet(
            Arc::new(fleet::StoreLimits(Arc::clone(&store))),
            Some(format!("run:{run_id}")),
        );
        let agent = BuiltinAgent::new(
            router,
            AgentSettings {
                temperature: models.temperature,
                max_tokens: models.max_tokens,
                default_model: models.default.clone(),
                max_iterations: models.max_iterations,
                free_only: models.free_only,
                task_budget_usd: config.config.budget.per_task(),
                context: ContextSettings {
                    token_budget: config.config.context.token_budget as usize,
                    conventions: config.config.context.conventions.clone(),
                },
                validation: config.config.validation.clone(),
                use_cache: settings.cache,
            },
        );
        Ok(Engine {
            store,
            agent,
            settings,
            run_id,
            tidied: Mutex::new(HashSet::new()),
            worktrees: WorktreePool::default(),
            budget_announced: AtomicBool::new(false),
            budget_short: AtomicBool::new(false),
            task_budget_usd: config.config.budget.per_task(),
            shared_health: Mutex::new(HashMap::new()),
            repos: config.repos(),
            config: config.config.clone(),
            gateway: tokio::sync::OnceCell::new(),
        })
    }

    pub fn run_id(&self) -> &str {
        &self.run_id
    }

    /// Runs workers until the queue is drained (or, with `forever`, until told to stop).
    /// On [`Stop::Finish`], or when the run's budget is spent, workers stop claiming and finish
    /// what they hold.
    pub async fn run(
        self: Arc<Self>,
        events: mpsc::UnboundedSender<Event>,
        stop: watch::Receiver<Stop>,
    ) -> Result<RunSummary, EngineError> {
        self.sync_health().await;
        self.tidy_finished(&events).await;
        let mut handles = Vec::new();
        for n in 0..self.settings.workers.max(1) {
            let engine = self.clone();
            let events = events.clone();
            let stop = stop.clone();
            let name = format!("{}/{n}", self.settings.worker_name);
            // Boxed: a worker's future holds a whole attempt's state.
            handles.push(tokio::spawn(async move {
                Box::pin(engine.worker(name, events, stop)).await
            }));
        }
        let mut summary = RunSummary::default();
        let mut first_error = None;
        for handle in handles {
            match handle.await {
                Ok(Ok(s)) => summary.add(s),
                Ok(Err(e)) => first_error = first_error.or(Some(e)),
                Err(join) => {
                    first_error = first_error.or(Some(EngineError::Setup(format!(
                        "a worker panicked: {join}"
                    ))))
                }
            }
        }
        summary.budget_spent = self.budget_announced.load(Ordering::Relaxed);
        for problem in self.worktrees.close().await {
            let _ = events.send(Event::Warning(problem));
        }
        if let Some(gateway) = self.gateway.get() {
            gateway.shutdown().await;
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(summary),
        }
    }

    /// Whether the run's budget is spent, or too little is left for a call; announces it
    /// once.
    fn budget_spent(&self, events: &mpsc::UnboundedSender<Event>) -> bool {
        let budget = self.agent.router().run_budget();
        if !budget.is_spent() && !self.budget_short.load(Ordering::Relaxed) {
            return false;
        }
        if !self.budget_announced.swap(true, Ordering::Relaxed) {
            let _ = events.send(Event::BudgetSpent {
                spent_usd: budget.spent_usd(),
            });
        }
        true
    }

    /// A task deferred for reasons not its own fails once it has been waiting longer than
    /// `wait_deadline`, counted from the first of its latest run of such attempts.
    async fn hold_to_wait_deadline(&self, task: &Task, end: &mut attempt::AttemptEnd) {
        if !matches!(end.disposition, Disposition::Defer { .. })
            || self.budget_short.load(Ordering::Relaxed)
        {
            return;
        }
        let attempts = match self.store.attempts(task.id).await {
            Ok(attempts) => attempts,
            Err(e) => {
                tracing::warn!("cannot read the attempts of task {}: {e}", task.id);
                return;
            }
        };
        let waiting_since = attempts
            .iter()
            .rev()
            .take_while(|a| a.error_kind.is_none_or(attempt::not_the_tasks_fault))
            .map(|a| a.started_at)
            .min();
        let Some(since) = waiting_since else { return };
        let waited = (chrono::Utc::now() - since).to_std().unwrap_or_default();
        if waited > self.settings.wait_deadline {
            end.disposition = Disposition::Fail;
            let reason = end.report.error.take().unwrap_or_default();
            end.report.error = Some(format!(
                "waited {} for reasons not its own, past its deadline of {} \
                 (workers.wait_deadline_secs); last: {reason}",
                humantime(waited),
                humantime(self.settings.wait_deadline)
            ));
        }
    }

    /// Whether a budget failure is the run's: it has a limit, and what it has left is no more
    /// than what a task may spend (so its limit, not the task's, is what bites).
    pub(crate) fn run_cannot_afford(&self) -> bool {
        let run = self.agent.router().run_budget();
        let Some(left) = run.remaining_usd() else {
            return false;
        };
        run.is_spent() || self.task_budget_usd.is_none_or(|task| left <= task)
    }

    /// Shares what the router learned with the other workers through the store, and takes
    /// in what they learned (cooldowns included).
    async fn sync_health(&self) {
        let router = self.agent.router();
        // Only what changed since the last exchange is written: idle workers stay quiet.
        let changed: Vec<ModelHealth> = {
            let shared = self.shared_health.lock().expect("not poisoned");
            router
                .health()
                .into_iter()
                .filter(|h| shared.get(&h.model).is_none_or(|s| !same_health(s, h)))
                .collect()
        };
        for health in &changed {
            if let Err(e) = self.store.record_model_health(health).await {
                tracing::warn!("could not save the health of {}: {e}", health.model);
            }
        }
        match self.store.model_health().await {
            Ok(stored) => {
                router.merge_health(&stored);
                let mut shared = self.shared_health.lock().expect("not poisoned");
                for health in router.health() {
                    shared.insert(health.model.clone(), health);
                }
            }
            Err(e) => tracing::warn!("could not load model health: {e}"),
        }
    }

    async fn worker(
        &self,
        name: String,
        events: mpsc::UnboundedSender<Event>,
        mut stop: watch::Receiver<Stop>,
    ) -> Result<RunSummary, EngineError> {
        let mut summary = RunSummary::default();
        let mut store_errors = 0;
        loop {
            if *stop.borrow() != Stop::Run || self.budget_spent(&events) {
                return Ok(summary);
            }
            let step = async {
                let rescued = self.store.rescue_expired().await?;
                if !rescued.is_empty() {
                    // The dead workers' worktrees go now, not at some later run.
                    self.sweep_abandoned_worktrees(&rescued, &events).await;
                }
                for rescued in rescued {
                    summary.rescued += 1;
                    let _ = events.send(Event::Rescued(rescued));
                }
                self.store.claim(&name, 1, self.settings.lease_ttl).await
            };
            let claimed = match step.await {
                Ok(c) => {
                    store_errors = 0;
                    c
                }
                Err(e) => {
                    store_errors += 1;
                    if store_errors >= MAX_STORE_ERRORS {
                        return Err(e.into());
                    }
                    let _ = events.send(Event::Warning(format!(
                        "{name}: store error, retrying: {e}"
                    )));
                    tokio::time::sleep(self.settings.poll_interval).await;
                    continue;
                }
            };
            if let Some((task, lease)) = claimed.into_iter().next() {
                summary.add(self.process(task, lease, &events, stop.clone()).await);
                self.sync_health().await;
                continue;
            }
            let stats = self.store.stats().await?;
            let active = stats.count(TaskStatus::Queued) + stats.count(TaskStatus::Running);
            if active == 0 && !self.settings.forever {
                return Ok(summary);
            }
            // Wait until the next task is due or a lease may expire, but look again soon.
            let now = chrono::Utc::now();
            let wake = [stats.next_run_at, stats.next_lease_expiry]
                .into_iter()
                .flatten()
                .min()
                .and_then(|t| (t - now).to_std().ok())
                .unwrap_or(self.settings.poll_interval)
                .clamp(Duration::from_millis(20), self.settings.poll_interval);
            // Returns early when the store signals new work (Postgres NOTIFY).
            tokio::select! {
                () = self.store.wait_for_work(wake) => {}
                _ = stop.changed() => {}
            }
            self.sync_health().await;
        }
    }

    /// Runs one claimed attempt to its end and records it.
    async fn process(
        &self,
        task: Task,
        lease: Lease,
        events: &mpsc::UnboundedSender<Event>,
        stop: watch::Receiver<Stop>,
    ) -> RunSummary {
        let mut summary = RunSummary::default();
        let _ = events.send(Event::Started {
            task: task.id,
            attempt: lease.attempt,
            worker: lease.owner.clone(),
            what: format!("{} {}", task.kind, task.targets.join(" ")),
        });
        let identity = RepoIdentity {
            path: &task.repo,
            url: task.repo_url.as_deref(),
            base_commit: &task.base_commit,
        };
        let (repo, unavailable) = match locate_repo(identity, &self.repos).await {
            Ok(repo) => (repo, None),
            Err(e) => (Repo::at(&task.repo), Some(e.to_string())),
        };
        if unavailable.is_none() {
            self.tidy(&repo, events).await;
        }
        // A pooled worktree, reset to the task's base (only what differs is written), or with
        // --keep-worktrees one of the attempt's own, left for inspection.
        let slot = match (&unavailable, self.settings.keep_worktrees) {
            (None, false) => {
                Some((self.worktrees.take(&repo.worktrees_dir())).map_err(|e| e.to_string()))
            }
            _ => None,
        };
        let worktree_dir = match &slot {
            Some(Ok(slot)) => slot.dir().to_path_buf(),
            _ => repo
                .worktrees_dir()
                .join(format!("{}-{}", task.id, lease.attempt)),
        };
        // `slot` stays held (locked) until the attempt is over.
        let unavailable = match &slot {
            Some(Err(e)) => Some(format!("no worktree slot for the attempt: {e}")),
            _ => unavailable,
        };

        let attempt = async {
            match &unavailable {
                // The repository is pitcrew's to find, not the task's fault: it waits.
                Some(why) => self.failure(ErrorKind::Workspace, why.clone(), lease.attempt, None),
                None => (self.attempt(&task, &repo, &worktree_dir, lease.attempt, events)).await,
            }
        };
        let ending = tokio::select! {
            end = attempt => Ending::Done(Box::new(end)),
            () = self.keep_lease(&lease, events) => Ending::LeaseLost,
            () = self.grace_after_stop(stop) => Ending::Interrupted,
        };
        if let Some(Ok(slot)) = slot {
            self.worktrees.give_back(&repo, slot);
        }
        let mut end = match ending {
            Ending::Done(end) => *end,
            Ending::LeaseLost => {
                summary.lease_lost += 1;
                let _ = events.send(Event::LeaseLost {
                    task: task.id,
                    attempt: lease.attempt,
                });
                return summary;
            }
            Ending::Interrupted => {
                let reason = format!(
                    "the worker stopped and the task did not finish within its {}s grace period",
                    self.settings.shutdown_grace.as_secs()
                );
                match self.store.release(&lease, &reason).await {
                    Ok(()) => {
                        summary.released += 1;
                        let _ = events.send(Event::Released {
                            task: task.id,
                            attempt: lease.attempt,
                        });
                    }
                    Err(StoreError::LeaseLost { .. }) => summary.lease_lost += 1,
                    Err(e) => {
                        let _ = events.send(Event::Warning(format!(
                            "could not give task {} back: {e}; its lease expires instead",
                            task.id
                        )));
                    }
                }
                return summary;
            }
        };
        end.report.run_id = Some(self.run_id.clone());
        self.hold_to_wait_deadline(&task, &mut end).await;
        // Findings quote command output and provider errors: no registered secret is stored
        // (the store redacts too; the patch is kept as verified).
        end.report.redact_secrets();
        summary.cost_usd += end.report.usage.cost_usd.unwrap_or(0.0);

        // The result's branch is made before the store says the task is done, so a worker
        // killed in between leaves a branch to be replaced by the next attempt, never a
        // finished task without one (nor a commit nothing refers to).
        let published = match (end.disposition, &end.report.commit) {
            (Disposition::Complete | Disposition::PossibleBug, Some(commit)) => {
                match repo.set_branch(&task.id.branch_name(), commit).await {
                    Ok(()) => Some(commit.clone()),
                    Err(e) => {
                        let _ = events.send(Event::Warning(format!(
                            "the branch of task {} could not be created ({e}); the next run \
                             creates it",
                            task.id
                        )));
                        None
                    }
                }
            }
            _ => None,
        };
        let finished = self
            .store
            .finish(&lease, end.disposition, &end.report)
            .await;
        // Taken back only when the store surely did not keep this result; after another
        // error the write may have landed, and the branch stays for the next run to judge.
        let not_kept = match &finished {
            Ok(status) => !matches!(status, TaskStatus::Completed | TaskStatus::PossibleBug),
            Err(e) => matches!(e, StoreError::LeaseLost { .. }),
        };
        if let Some(commit) = published.as_ref().filter(|_| not_kept) {
            self.take_back_branch(&repo, &task, commit, events).await;
        }
        match finished {
            Ok(status) => {
                let branch = published.is_some().then(|| task.id.branch_name());
                match status {
                    TaskStatus::Completed => summary.completed += 1,
                    TaskStatus::PossibleBug => summary.possible_bugs += 1,
                    TaskStatus::Failed => summary.failed += 1,
                    _ => summary.retried += 1,
                }
                let retry_in = match (status, end.disposition) {
                    (
                        TaskStatus::Queued,
                        Disposition::Retry { delay } | Disposition::Defer { delay },
                    ) => Some(delay),
                    _ => None,
                };
                let _ = events.send(Event::Finished {
                    task: task.id,
                    attempt: lease.attempt,
                    status,
                    model: end.report.model.clone(),
                    error: end.report.error.clone(),
                    retry_in,
                    branch,
                    usage: end.report.usage,
                    iterations: end.iterations,
                });
            }
            Err(StoreError::LeaseLost { .. }) => {
                summary.lease_lost += 1;
                let _ = events.send(Event::LeaseLost {
                    task: task.id,
                    attempt: lease.attempt,
                });
            }
            Err(e) => {
                // The lease stays; it expires and the task is rescued and retried.
                let _ = events.send(Event::Warning(format!(
                    "could not record the end of task {}: {e}",
                    task.id
                )));
            }
        }
        summary
    }

    /// Undoes the branch this attempt set at `commit` when the store did not keep its result:
    /// back to the result the task has now, or deleted when it has none. A branch another
    /// worker moved since is left alone.
    async fn take_back_branch(
        &self,
        repo: &Repo,
        task: &Task,
        commit: &str,
        events: &mpsc::UnboundedSender<Event>,
    ) {
        let name = task.id.branch_name();
        let kept = match self.store.find(&task.id.to_string()).await {
            Ok(now) => match now.status {
                TaskStatus::Completed | TaskStatus::PossibleBug => now.result_commit,
                _ => None,
            },
            Err(e) => {
                let _ = events.send(Event::Warning(format!(
                    "branch {name} may hold a result that was not kept: {e}"
                )));
                return;
            }
        };
        if let Err(e) = repo.move_branch_from(&name, commit, kept.as_deref()).await {
            let _ = events.send(Event::Warning(format!(
                "branch {name} may hold a result that was not kept: {e}"
            )));
        }
    }

    /// Returns once the run was told to stop and the grace period has passed since, or at
    /// once when told to abort.
    async fn grace_after_stop(&self, mut stop: watch::Receiver<Stop>) {
        let mut grace = None;
        loop {
            match *stop.borrow_and_update() {
                Stop::Run => {}
                Stop::Finish => {
                    grace.get_or_insert_with(|| {
                        Box::pin(tokio::time::sleep(self.settings.shutdown_grace))
                    });
                }
                Stop::Abort => return,
            }
            let waiting = async {
                match grace.as_mut() {
                    Some(sleep) => sleep.await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = waiting => return,
                changed = stop.changed() => if changed.is_err() {
                    // Nobody can change the order any more: what holds now holds for good.
                    match grace.take() {
                        Some(sleep) => return sleep.await,
                        None => std::future::pending().await,
                    }
                },
            }
        }
    }

    /// Heart-beats `lease` until it is lost; never returns while the lease is held.
    async fn keep_lease(&self, lease: &Lease, events: &mpsc::UnboundedSender<Event>) {
        let every = (self.settings.lease_ttl / 3).max(Duration::from_millis(50));
        loop {
            tokio::time::sleep(every).await;
            match self.store.heartbeat(lease, self.settings.lease_ttl).await {
                Ok(()) => {}
                Err(StoreError::LeaseLost { .. }) => return,
                Err(e) => {
                    // Keep trying: the lease is still ours until it expires.
                    let _ = events.send(Event::Warning(format!(
                        "heartbeat for task {} failed: {e}",
                        lease.task_id
                    )));
                }
            }
        }
    }
}
