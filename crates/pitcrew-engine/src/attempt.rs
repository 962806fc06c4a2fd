//! One attempt at a task: a fresh worktree at the base commit, the agent, and the verdict
//! turned into what the store records (a commit and patch when there is a result).

use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::Duration;

use pitcrew_core::{AttemptReport, ErrorKind, Task, TaskId, TaskKind, VerifiedFile};
use pitcrew_llm::RouteEvent;
use pitcrew_runtime::{AgentEvent, AgentRun, GitError, Repo, Verdict, Worktree};
use pitcrew_store::Disposition;
use tokio::sync::mpsc;

use crate::{Engine, Event};

const MAX_RETRY_DELAY: Duration = Duration::from_secs(600);

/// How one attempt ended, before it is written to the store.
pub(crate) struct AttemptEnd {
    pub disposition: Disposition,
    pub report: AttemptReport,
    pub iterations: usize,
}

impl Engine {
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

    pub(crate) fn failure(
        &self,
        kind: ErrorKind,
        message: String,
        attempt: u32,
        asked: Option<Duration>,
    ) -> AttemptEnd {
        let disposition = if kind == ErrorKind::Budget && self.run_cannot_afford() {
            // The run ran out of money, not the task: it waits in the queue for the next run,
            // and this run claims nothing more.
            self.budget_short.store(true, Ordering::Relaxed);
            Disposition::Defer {
                delay: Duration::ZERO,
            }
        } else if not_the_tasks_fault(kind) {
            // A provider outage, no model free, a cut or malformed stream, pitcrew's own
            // trouble: the task waits, without using an attempt (up to its wait deadline).
            let Disposition::Retry { delay } = self.retry(attempt, asked) else {
                unreachable!("retry gives a retry")
            };
            Disposition::Defer { delay }
        } else if kind.is_retryable() || an_agent_may_do_better(kind) {
            self.retry(attempt, asked)
        } else {
            Disposition::Fail
        };
        AttemptEnd {
            disposition,
            report: AttemptReport {
                error_kind: Some(kind),
                error: Some(message),
                ..AttemptReport::default()
            },
            iterations: 0,
        }
    }

    /// One attempt under the task's time limit.
    pub(crate) async fn attempt(
        &self,
        task: &Task,
        repo: &Repo,
        dir: &Path,
        attempt: u32,
        events: &mpsc::UnboundedSender<Event>,
    ) -> AttemptEnd {
        // An external agent's own time limit is for one run; the attempt gets at least that
        // (its rounds after the first are bounded by the task's limit).
        let (limit, which) = match self
            .config
            .runtime_named(&self.config.runtime_of(task.kind, &task.metadata))
        {
            Ok(Some(spec)) if spec.timeout() > self.settings.task_timeout => (
                spec.timeout(),
                "the runtime's timeout_secs, longer than workers.task_timeout_secs",
            ),
            _ => (self.settings.task_timeout, "workers.task_timeout_secs"),
        };
        match tokio::time::timeout(
            limit,
            self.attempt_in_worktree(task, repo, dir, attempt, events),
        )
        .await
        {
            Ok(end) => end,
            Err(_) => self.failure(
                ErrorKind::Timeout,
                format!(
                    "the attempt ran past the task time limit of {}s ({which})",
                    limit.as_secs()
                ),
                attempt,
                None,
            ),
        }
    }

    async fn attempt_in_worktree(
        &self,
        task: &Task,
        repo: &Repo,
        dir: &Path,
        attempt: u32,
        events: &mpsc::UnboundedSender<Event>,
    ) -> AttemptEnd {
        let worktree = match repo.checkout_worktree(dir, &task.base_commit).await {
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
        let follow = self
            .settings
            .follow
            .as_deref()
            .is_some_and(|prefix| task.id.to_string().starts_with(prefix));
        let mut on_event = progress_reporter(task.id, follow, events.clone());
        let runtime = self.config.runtime_of(task.kind, &task.metadata);
        let run = match self.config.runtime_named(&runtime) {
            Ok(None) => self.agent.run(task, &worktree, &mut on_event).await,
            Ok(Some(spec)) => {
                self.external(task, &worktree, &runtime, spec, attempt, &mut on_event)
                    .await
            }
            Err(message) => {
                return self.failure(
                    ErrorKind::Config,
                    format!("this worker's configuration cannot run the task: {message}"),
                    attempt,
                    None,
                );
            }
        };
        self.conclude(task, &worktree, run, attempt).await
    }

    /// Turns the agent's run into the attempt's end: a commit and patch when there is a result.
    async fn conclude(
        &self,
        task: &Task,
        worktree: &Worktree,
        run: AgentRun,
        attempt: u32,
    ) -> AttemptEnd {
        let mut end = match &run.verdict {
            Verdict::Failed {
                kind,
                message,
                retry_after,
            } => self.failure(*kind, message.clone(), attempt, *retry_after),
            Verdict::Accepted => {
                self.keep(task, worktree, &run, Disposition::Complete, None, attempt)
                    .await
            }
            Verdict::PossibleBug { message } => {
                let error = Some(message.clone());
                self.keep(
                    task,
                    worktree,
                    &run,
                    Disposition::PossibleBug,
                    error,
                    attempt,
                )
                .await
            }
        };
        end.iterations = run.details.iterations.len();
        end.report.model = run.model_id;
        end.report.usage = run.usage;
        end.report.latency_ms = run.latency.map(|l| l.as_millis() as u64);
        end.report.findings = run.findings;
        end.report.quality = run.quality;
        let mut details = serde_json::to_value(&run.details).unwrap_or_default();
        if let (Some(fields), Some(model)) = (details.as_object_mut(), run.model) {
            fields.insert("model".into(), model.into());
        }
        end.report.details = details;
        end
    }
}

/// The subject of a result commit: what it adds, and the task's handle, e.g.
/// `pitcrew #12: add tests/test_calc.py (4 tests) for src/calc.py`.
fn subject(task: &Task, run: &AgentRun, disposition: Disposition) -> String {
    let mut files: Vec<&str> = run.verified.iter().map(|f| f.path.as_str()).collect();
    files.sort_unstable();
    let files = match files.as_slice() {
        [] => "nothing".to_string(),
        [one] => one.to_string(),
        [one, two] => format!("{one} and {two}"),
        [first, rest @ ..] => format!("{first} and {} more files", rest.len()),
    };
    let tests = run
        .details
        .validation
        .as_ref()
        .map(|v| v.evidence.tests_collected)
        .filter(|n| *n > 0)
        .map(|n| format!(" ({n} test{})", if n == 1 { "" } else { "s" }))
        .unwrap_or_default();
    let targets = task.targets.join(" ");
    let what = match (disposition, task.kind) {
        (Disposition::PossibleBug, _) => format!("possible bug in {targets}: {files}{tests}"),
        (_, TaskKind::UnitTest | TaskKind::IntegrationTest) => {
            format!("add {files}{tests} for {targets}")
        }
        (_, kind) => format!("{kind} {targets}: change {files}"),
    };
    format!("pitcrew #{}: {what}", task.seq)
}

impl Engine {
    /// Commits a result worth keeping (accepted, or a possible bug for a human to judge).
    async fn keep(
        &self,
        task: &Task,
        worktree: &Worktree,
        run: &AgentRun,
        disposition: Disposition,
        error: Option<String>,
        attempt: u32,
    ) -> AttemptEnd {
        // The evidence card: what the checks showed, for whoever reviews the commit.
        let mut evidence: Vec<String> = run
            .details
            .validation
            .as_ref()
            .map(pitcrew_validate::ValidationReport::card)
            .unwrap_or_default();
        evidence.push(format!(
            "rounds: {}, cost: {}",
            run.details.iterations.len(),
            run.usage
                .cost_usd
                .map_or_else(|| "unknown".to_string(), |c| format!("${c:.4}"))
        ));
        for bug in &run.details.possible_bugs {
            evidence.push(format!(
                "removed, failing against the code (a bug, or a wrong expectation): {}",
                bug.test
            ));
        }
        let message = format!(
            "{}\n\n{}\n\n{}\n\nTask: {}\nModel: {}\n",
            subject(task, run, disposition),
            task.description,
            evidence.join("\n"),
            task.id,
            run.model_id.as_deref().unwrap_or("unknown")
        );
        match commit(worktree, &run.verified, &message).await {
            Ok(Some((commit, patch))) => AttemptEnd {
                disposition,
                report: AttemptReport {
                    commit: Some(commit),
                    patch: Some(patch),
                    error_kind: error.as_ref().map(|_| ErrorKind::ValidationFailed),
                    error,
                    ..AttemptReport::default()
                },
                iterations: 0,
            },
            Ok(None) => self.failure(
                ErrorKind::NoFiles,
                "the reply's files are identical to the base commit: nothing changed".into(),
                attempt,
                None,
            ),
            Err(e) => self.failure(
                ErrorKind::Workspace,
                format!("cannot commit the result: {e}"),
                attempt,
                None,
            ),
        }
    }
}

/// Whether a failure of `kind` is not the task's own, so it never uses an attempt: the
/// provider or pitcrew failed, not the task or the model's reply.
pub(crate) fn not_the_tasks_fault(kind: ErrorKind) -> bool {
    use ErrorKind::*;
    matches!(
        kind,
        Connection
            | RateLimit
            | Quota
            | ServerError
            | Truncated
            | MalformedStream
            | NoModelAvailable
            | Interrupted
            | Workspace
            | RuntimeStartup
    )
}

/// Whether another attempt may succeed where an external agent failed on its own: it starts
/// afresh, and agents vary from run to run. The attempt still counts.
fn an_agent_may_do_better(kind: ErrorKind) -> bool {
    matches!(
        kind,
        ErrorKind::Stuck | ErrorKind::AgentError | ErrorKind::NoChanges
    )
}

/// Commits the verified files; `None` when they match the base.
async fn commit(
    worktree: &Worktree,
    verified: &[VerifiedFile],
    message: &str,
) -> Result<Option<(String, String)>, GitError> {
    let Some(commit) = worktree.commit_files(verified, message).await? else {
        return Ok(None);
    };
    let patch = worktree.repo().diff(worktree.base(), &commit).await?;
    Ok(Some((commit, patch)))
}

/// Turns the agent's events into engine events (and the log, for generated text).
fn progress_reporter(
    task: TaskId,
    follow: bool,
    events: mpsc::UnboundedSender<Event>,
) -> impl FnMut(AgentEvent<'_>) + Send {
    // Generated text is logged a line at a time, so that a secret split across stream
    // chunks is whole in one log line, where redaction can find it.
    let mut pending = String::new();
    move |event| {
        let message = match event {
            AgentEvent::Iteration { number } => format!("round {number}"),
            AgentEvent::CacheHit { model } => format!("reply of {model} taken from the cache"),
            AgentEvent::Validating => "validating".to_string(),
            AgentEvent::Transcript { kind, text } => {
                let first = text.lines().next().unwrap_or_default();
                let cut: String = first.chars().take(160).collect();
                format!("agent {kind}: {cut}")
            }
            AgentEvent::Model(RouteEvent::Started { model }) => format!("calling {model}"),
            AgentEvent::Model(RouteEvent::Failed {
                model,
                kind,
                message,
            }) => {
                format!("{model} failed ({kind}): {message}")
            }
            AgentEvent::Model(RouteEvent::Waiting { reason, .. }) => {
                format!("waiting for {reason}")
            }
            AgentEvent::Model(RouteEvent::Delta(text)) => {
                pending.push_str(text);
                while let Some(end) = pending.find('\n') {
                    let line: String = pending.drain(..=end).collect();
                    tracing::trace!(target: "pitcrew::generation", %task, text = line.trim_end());
                }
                if follow {
                    let _ = events.send(Event::Output {
                        task,
                        text: text.to_string(),
                    });
                }
                return;
            }
        };
        if !pending.is_empty() {
            tracing::trace!(target: "pitcrew::generation", %task, text = pending.as_str());
            pending.clear();
        }
        tracing::debug!(%task, "{message}");
        let _ = events.send(Event::Progress { task, message });
    }
}
