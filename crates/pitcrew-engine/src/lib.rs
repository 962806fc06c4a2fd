//! The worker pool behind `pitcrew run`: N workers claim tasks from the store, keep their
//! leases alive, run the built-in agent in a fresh worktree per attempt, and record each
//! outcome with a write fenced by the lease. Accepted results become a commit on
//! `pitcrew/<task-id>` plus a stored patch. Progress is reported as [`Event`]s; printing them
//! is the caller's business.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pitcrew_core::config::LoadedConfig;
use pitcrew_core::{AttemptReport, ErrorKind, Lease, Task, TaskFilter, TaskId, TaskStatus, Usage};
use pitcrew_llm::{ChatClient, Endpoint};
use pitcrew_runtime::{AgentRun, AgentSettings, BuiltinAgent, ContextSettings, Repo, Worktree};
use pitcrew_store::{Disposition, Rescued, Store, StoreError};
use tokio::sync::{mpsc, watch};

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
    Finished {
        task: TaskId,
        attempt: u32,
        status: TaskStatus,
        model: Option<String>,
        error: Option<String>,
        /// Set when the task went back to the queue.
        retry_in: Option<Duration>,
        branch: Option<String>,
        /// What the attempt spent, as reported by the provider.
        usage: Usage,
    },
    /// The task was rescued or cancelled while this worker held it; its result is discarded.
    LeaseLost {
        task: TaskId,
        attempt: u32,
    },
    Rescued(Rescued),
    Warning(String),
}

/// What this run finished.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct RunSummary {
    pub completed: u32,
    pub failed: u32,
    /// Attempts that failed for a reason worth retrying; their tasks went back to the queue.
    pub retried: u32,
    /// Attempts whose lease was lost (rescued or cancelled elsewhere).
    pub lease_lost: u32,
    /// Expired leases of other workers this run took back.
    pub rescued: u32,
}

impl RunSummary {
    fn add(&mut self, other: RunSummary) {
        self.completed += other.completed;
        self.failed += other.failed;
        self.retried += other.retried;
        self.lease_lost += other.lease_lost;
        self.rescued += other.rescued;
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("the store failed repeatedly: {0}")]
    Store(#[from] StoreError),
    #[error("{0}")]
    Setup(String),
}

/// After this many store errors in a row a worker gives up (its tasks' leases will expire and
/// be rescued by the next run).
const MAX_STORE_ERRORS: u32 = 5;
const MAX_RETRY_DELAY: Duration = Duration::from_secs(600);

#[derive(Debug)]
pub struct Engine {
    store: Arc<dyn Store>,
    config: LoadedConfig,
    agent: BuiltinAgent,
    settings: EngineSettings,
    /// Repositories already tidied by this run.
    tidied: Mutex<HashSet<PathBuf>>,
}

/// How one attempt ended, before it is written to the store.
struct AttemptEnd {
    disposition: Disposition,
    report: AttemptReport,
}

impl Engine {
    pub fn new(
        store: Arc<dyn Store>,
        config: LoadedConfig,
        settings: EngineSettings,
    ) -> Result<Self, EngineError> {
        let models = &config.config.models;
        let client = ChatClient::new(Duration::from_secs(models.request_timeout_secs))
            .map_err(|e| EngineError::Setup(e.to_string()))?;
        let agent = BuiltinAgent::new(
            client,
            AgentSettings {
                temperature: models.temperature,
                max_tokens: models.max_tokens,
                validation_command: config.config.validation.command.clone(),
                validation_timeout: Duration::from_secs(config.config.validation.timeout_secs),
                context: ContextSettings::default(),
            },
        );
        Ok(Engine {
            store,
            config,
            agent,
            settings,
            tidied: Mutex::new(HashSet::new()),
        })
    }

    /// Runs workers until the queue is drained (or, with `forever`, until `stop` turns true).
    /// When `stop` turns true workers stop claiming and finish what they hold.
    pub async fn run(
        self: Arc<Self>,
        events: mpsc::UnboundedSender<Event>,
        stop: watch::Receiver<bool>,
    ) -> Result<RunSummary, EngineError> {
        let mut handles = Vec::new();
        for n in 0..self.settings.workers.max(1) {
            let engine = self.clone();
            let events = events.clone();
            let stop = stop.clone();
            let name = format!("{}/{n}", self.settings.worker_name);
            handles.push(tokio::spawn(async move {
                engine.worker(name, events, stop).await
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
        match first_error {
            Some(e) => Err(e),
            None => Ok(summary),
        }
    }

    async fn worker(
        &self,
        name: String,
        events: mpsc::UnboundedSender<Event>,
        mut stop: watch::Receiver<bool>,
    ) -> Result<RunSummary, EngineError> {
        let mut summary = RunSummary::default();
        let mut store_errors = 0;
        loop {
            if *stop.borrow() {
                return Ok(summary);
            }
            let step = async {
                for rescued in self.store.rescue_expired().await? {
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
                summary.add(self.process(task, lease, &events).await);
                continue;
            }
            let stats = self.store.stats().await?;
            let active = stats.count(TaskStatus::Queued) + stats.count(TaskStatus::Running);
            if active == 0 && !self.settings.forever {
                return Ok(summary);
            }
            // Sleep until the next task is due or a lease may expire, but look again soon.
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
        }
    }

    /// Runs one claimed attempt to its end and records it.
    async fn process(
        &self,
        task: Task,
        lease: Lease,
        events: &mpsc::UnboundedSender<Event>,
    ) -> RunSummary {
        let mut summary = RunSummary::default();
        let _ = events.send(Event::Started {
            task: task.id,
            attempt: lease.attempt,
            worker: lease.owner.clone(),
            what: format!("{} {}", task.kind, task.targets.join(" ")),
        });
        let repo = Repo::at(&task.repo);
        self.tidy(&repo, events).await;
        let worktree_dir = repo
            .root()
            .join(".pitcrew/worktrees")
            .join(format!("{}-{}", task.id, lease.attempt));

        let work = async {
            match tokio::time::timeout(
                self.settings.task_timeout,
                self.attempt(&task, &repo, &worktree_dir, lease.attempt),
            )
            .await
            {
                Ok(end) => end,
                Err(_) => AttemptEnd {
                    disposition: self.retry(lease.attempt, None),
                    report: AttemptReport {
                        error_kind: Some(ErrorKind::Timeout),
                        error: Some(format!(
                            "the attempt ran past the task time limit of {}s",
                            self.settings.task_timeout.as_secs()
                        )),
                        ..AttemptReport::default()
                    },
                },
            }
        };
        let end = tokio::select! {
            end = work => Some(end),
            () = self.keep_lease(&lease, events) => None,
        };
        if let Err(e) = repo.remove_worktree(&worktree_dir).await {
            let _ = events.send(Event::Warning(format!(
                "could not remove worktree {}: {e}",
                worktree_dir.display()
            )));
        }
        let Some(end) = end else {
            summary.lease_lost += 1;
            let _ = events.send(Event::LeaseLost {
                task: task.id,
                attempt: lease.attempt,
            });
            return summary;
        };

        match self
            .store
            .finish(&lease, end.disposition, &end.report)
            .await
        {
            Ok(status) => {
                let mut branch = None;
                if let (TaskStatus::Completed, Some(commit)) = (status, &end.report.commit) {
                    // Published only after the fenced write succeeded: a worker whose lease
                    // was lost never creates the branch.
                    match repo.create_branch(&task.id.branch_name(), commit).await {
                        Ok(()) => branch = Some(task.id.branch_name()),
                        Err(e) => {
                            let _ = events.send(Event::Warning(format!(
                                "task {} completed but its branch could not be created ({e}); \
                                 the next run creates it",
                                task.id
                            )));
                        }
                    }
                }
                match status {
                    TaskStatus::Completed => summary.completed += 1,
                    TaskStatus::Failed => summary.failed += 1,
                    _ => summary.retried += 1,
                }
                let retry_in = match (status, end.disposition) {
                    (TaskStatus::Queued, Disposition::Retry { delay }) => Some(delay),
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

    /// Retry after the backoff for `attempt` (at least what the provider asked for).
    fn retry(&self, attempt: u32, asked: Option<Duration>) -> Disposition {
        let exponent = attempt.saturating_sub(1).min(16);
        let backoff = self
            .settings
            .retry_backoff
            .mul_f64(f64::from(1u32 << exponent) * (0.8 + 0.4 * fastrand::f64()))
            .min(MAX_RETRY_DELAY);
        Disposition::Retry {
            delay: backoff.max(asked.unwrap_or_default()),
        }
    }

    fn failure(
        &self,
        kind: ErrorKind,
        message: String,
        attempt: u32,
        asked: Option<Duration>,
    ) -> AttemptEnd {
        AttemptEnd {
            disposition: if kind.is_retryable() {
                self.retry(attempt, asked)
            } else {
                Disposition::Fail
            },
            report: AttemptReport {
                error_kind: Some(kind),
                error: Some(message),
                ..AttemptReport::default()
            },
        }
    }

    /// One attempt: model and key from the configuration, a worktree at the base commit, the
    /// agent, and, when it produced files, a commit and its patch.
    async fn attempt(&self, task: &Task, repo: &Repo, dir: &Path, attempt: u32) -> AttemptEnd {
        let model = match self.config.resolve_model(task.model.as_deref()) {
            Ok(m) => m,
            Err(e) => return self.failure(ErrorKind::Config, e.to_string(), attempt, None),
        };
        let api_key = match self.config.api_key(&model) {
            Ok(k) => k,
            Err(e) => return self.failure(ErrorKind::Config, e.to_string(), attempt, None),
        };
        let endpoint = Endpoint {
            base_url: model.base_url.clone(),
            api_key,
            api_key_env: model.api_key_env.clone(),
        };
        let worktree = match self.fresh_worktree(repo, dir, &task.base_commit).await {
            Ok(w) => w,
            Err(e) => {
                return self.failure(
                    ErrorKind::Workspace,
                    format!(
                        "cannot prepare a worktree of {} at {}: {e}",
                        task.repo, task.base_commit
                    ),
                    attempt,
                    None,
                );
            }
        };
        let run = self.agent.run(task, &worktree, &model, &endpoint).await;
        self.conclude(task, &worktree, run, attempt).await
    }

    async fn fresh_worktree(
        &self,
        repo: &Repo,
        dir: &Path,
        base: &str,
    ) -> Result<Worktree, pitcrew_runtime::GitError> {
        if dir.exists() {
            repo.remove_worktree(dir).await?;
        }
        repo.add_worktree(dir, base).await
    }

    /// Turns the agent's run into the attempt's end: a commit and patch when it succeeded.
    async fn conclude(
        &self,
        task: &Task,
        worktree: &Worktree,
        run: AgentRun,
        attempt: u32,
    ) -> AttemptEnd {
        let mut end = match &run.failure {
            Some((kind, message)) => self.failure(*kind, message.clone(), attempt, run.retry_after),
            None => {
                let message = format!(
                    "pitcrew: {} {}\n\n{}\n\nTask: {}\nModel: {}\n",
                    task.kind,
                    task.targets.join(" "),
                    task.description,
                    task.id,
                    run.model
                );
                let committed = match worktree.commit_files(&run.written, &message).await {
                    Ok(Some(commit)) => worktree
                        .repo()
                        .diff(worktree.base(), &commit)
                        .await
                        .map(|patch| (commit, patch)),
                    Ok(None) => {
                        return self.with_run(
                            self.failure(
                                ErrorKind::NoFiles,
                                "the reply's files are identical to the base commit: nothing changed".into(),
                                attempt,
                                None,
                            ),
                            run,
                        );
                    }
                    Err(e) => Err(e),
                };
                match committed {
                    Ok((commit, patch)) => AttemptEnd {
                        disposition: Disposition::Complete,
                        report: AttemptReport {
                            commit: Some(commit),
                            patch: Some(patch),
                            ..AttemptReport::default()
                        },
                    },
                    Err(e) => self.failure(
                        ErrorKind::Workspace,
                        format!("cannot commit the result: {e}"),
                        attempt,
                        None,
                    ),
                }
            }
        };
        end = self.with_run(end, run);
        end
    }

    fn with_run(&self, mut end: AttemptEnd, run: AgentRun) -> AttemptEnd {
        end.report.model = Some(run.model);
        end.report.usage = run.usage;
        end.report.latency_ms = run.latency.map(|l| l.as_millis() as u64);
        end.report.findings = run.findings;
        end
    }

    /// Once per repository and run: removes worktrees left by attempts that no longer run,
    /// and creates result branches a crash prevented.
    async fn tidy(&self, repo: &Repo, events: &mpsc::UnboundedSender<Event>) {
        if !self
            .tidied
            .lock()
            .expect("not poisoned")
            .insert(repo.root().to_path_buf())
        {
            return;
        }
        let warn = |message: String| {
            let _ = events.send(Event::Warning(message));
        };
        let dir = repo.root().join(".pitcrew/worktrees");
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let still_running = match name.rsplit_once('-') {
                Some((id, attempt)) => match self.store.find(id).await {
                    Ok(t) => t.status == TaskStatus::Running && t.attempts.to_string() == attempt,
                    Err(_) => false,
                },
                None => false,
            };
            if !still_running && let Err(e) = repo.remove_worktree(&entry.path()).await {
                warn(format!(
                    "could not remove stale worktree {}: {e}",
                    entry.path().display()
                ));
            }
        }
        let completed = match self
            .store
            .list(&TaskFilter {
                status: Some(TaskStatus::Completed),
                ..TaskFilter::default()
            })
            .await
        {
            Ok(tasks) => tasks,
            Err(e) => return warn(format!("could not list completed tasks: {e}")),
        };
        let existing: HashSet<String> = match repo.branches_with_prefix("pitcrew/").await {
            Ok(b) => b.into_iter().collect(),
            Err(e) => return warn(format!("could not list pitcrew branches: {e}")),
        };
        let root = repo.root().to_string_lossy();
        for task in completed.iter().filter(|t| t.repo == root) {
            let (Some(commit), false) = (
                &task.result_commit,
                existing.contains(&task.id.branch_name()),
            ) else {
                continue;
            };
            if let Err(e) = repo.create_branch(&task.id.branch_name(), commit).await {
                warn(format!(
                    "could not restore branch {}: {e}",
                    task.id.branch_name()
                ));
            }
        }
    }
}
