//! Attempts by an external agent (OpenHands, any CLI agent): the agent works in the task's
//! worktree, confined to it, reaching models only through the per-task gateway; what it
//! changed is read from git and held to the same change-set rules and validation as the
//! built-in agent's files. The agent's own word (its exit status, its final message) decides
//! nothing: rounds end on what validation found, and its findings go back to the agent.

use std::path::{Path, PathBuf};

use pitcrew_agents::{FailureClass, GatewayAccess, Job, RuntimeSpec, TranscriptEntry};
use pitcrew_core::{ErrorKind, Finding, Task, Usage};
use pitcrew_gateway::{Gateway, Grant, Session};
use pitcrew_llm::Budget;
use pitcrew_runtime::{
    AgentEvent, AgentRun, IterationRecord, MAX_FILES_PER_REPLY, MAX_REPLY_FILE_BYTES,
    PromptLibrary, Verdict, Worktree, cache_root, summary,
};
use pitcrew_validate::Outcome;
use serde::Serialize;

use crate::Engine;

/// Transcript entries kept per attempt (the last ones), so a chatty agent cannot bloat the
/// store.
const MAX_TRANSCRIPT: usize = 2_000;

/// What is recorded about an external runtime on the attempt (`show --json`).
#[derive(Debug, Default, Serialize)]
struct RuntimeRecord {
    name: String,
    kind: &'static str,
    /// Each round's command line (the gateway token redacted), exit status and duration.
    runs: Vec<RunRecord>,
    /// The gateway's view: requests the agent made, refused ones and why.
    requests: u32,
    refused: Vec<String>,
    transcript: Vec<TranscriptEntry>,
}

#[derive(Debug, Serialize)]
struct RunRecord {
    round: u32,
    argv: Vec<String>,
    exit_code: Option<i32>,
    duration_ms: u64,
    outcome: String,
}

fn kind_of(class: FailureClass) -> ErrorKind {
    match class {
        // Retrying cannot fix a missing program or a refused setting: the task fails now,
        // saying which field to change.
        FailureClass::Misconfigured => ErrorKind::Config,
        FailureClass::Startup => ErrorKind::RuntimeStartup,
        FailureClass::Timeout => ErrorKind::Timeout,
        FailureClass::Stuck => ErrorKind::Stuck,
        FailureClass::AgentError => ErrorKind::AgentError,
    }
}

impl Engine {
    /// The gateway of this process, started on first use.
    async fn gateway(&self) -> Result<Gateway, String> {
        self.gateway
            .get_or_try_init(|| async {
                Gateway::start(self.agent.router().clone())
                    .await
                    .map_err(|e| format!("cannot start the model gateway: {e}"))
            })
            .await
            .cloned()
    }

    /// One attempt of `task` by the external runtime `name`.
    pub(crate) async fn external(
        &self,
        task: &Task,
        worktree: &Worktree,
        name: &str,
        spec: &RuntimeSpec,
        attempt: u32,
        on_event: &mut (dyn FnMut(AgentEvent<'_>) + Send),
    ) -> AgentRun {
        let mut run = AgentRun::new();
        let (prompt, context) = match self.agent.agent_prompt(task, worktree).await {
            Ok(prompt) => prompt,
            Err(verdict) => {
                run.verdict = verdict;
                return run;
            }
        };
        run.details.context = Some(context);
        let gateway = match self.gateway().await {
            Ok(gateway) => gateway,
            Err(message) => {
                run.verdict = Verdict::failure(ErrorKind::RuntimeStartup, message);
                return run;
            }
        };
        let rounds = self.agent.settings().max_iterations;
        let session = gateway.open(Grant {
            task: task.id.to_string(),
            requirements: self.agent.requirements(task),
            temperature: self.agent.settings().temperature,
            budget: Budget::new(self.task_budget_usd),
            max_calls: Some(spec.max_iterations().saturating_mul(rounds)),
            deadline: None,
        });
        let access = GatewayAccess {
            base_url: session.base_url(),
            port: gateway.port(),
            token: session.token().clone(),
            model: session.model().to_string(),
        };
        let mut record = RuntimeRecord {
            name: name.to_string(),
            kind: spec.kind_name(),
            ..RuntimeRecord::default()
        };
        let scratch = match Scratch::create(
            cache_root()
                .join("agents")
                .join(format!("{}-{attempt}", task.id)),
            self.settings.keep_worktrees,
        ) {
            Ok(scratch) => scratch,
            Err(message) => {
                run.verdict = Verdict::failure(ErrorKind::Workspace, message);
                return run;
            }
        };
        self.rounds(
            task,
            worktree,
            spec,
            attempt,
            &access,
            &session,
            &prompt,
            &scratch.path,
            &mut record,
            &mut run,
            on_event,
        )
        .await;
        drop(scratch);
        let report = session.report();
        session.revoke();
        run.usage = report.usage;
        record.requests = report.requests;
        record.refused = report.refused;
        if let Some(model) = report.models.last() {
            run.model_id = self
                .agent
                .router()
                .registry()
                .get(model)
                .map(|m| m.id.clone());
            run.model = Some(model.clone());
        }
        run.latency = report
            .calls
            .iter()
            .rev()
            .find(|c| c.error_kind.is_none())
            .map(|c| std::time::Duration::from_millis(c.latency_ms));
        run.details.runtime = serde_json::to_value(&record).ok();
        run
    }

    /// Rounds of agent run and validation until the change passes, a round fails for a
    /// reason of its own, or the rounds are used up.
    #[allow(clippy::too_many_arguments)]
    async fn rounds(
        &self,
        task: &Task,
        worktree: &Worktree,
        spec: &RuntimeSpec,
        attempt: u32,
        access: &GatewayAccess,
        session: &Session,
        prompt: &str,
        scratch: &Path,
        record: &mut RuntimeRecord,
        run: &mut AgentRun,
        on_event: &mut (dyn FnMut(AgentEvent<'_>) + Send),
    ) {
        let rounds = self.agent.settings().max_iterations;
        let library = PromptLibrary::new(Some(worktree.repo()));
        let git_dir = worktree.repo().root().join(".git");
        let mut message = prompt.to_string();
        let mut calls_seen = 0;
        for number in 1..=rounds {
            on_event(AgentEvent::Iteration { number });
            let mut forward = |entry: &TranscriptEntry| {
                on_event(AgentEvent::Transcript {
                    kind: &entry.kind,
                    text: &entry.text,
                });
            };
            let ended = pitcrew_agents::run(
                spec,
                Job {
                    name: &record.name,
                    task_id: &task.id.to_string(),
                    attempt,
                    worktree: worktree.path(),
                    scratch,
                    git_dir: git_dir.is_dir().then_some(git_dir.as_path()),
                    prompt: &message,
                    targets: &task.targets,
                    gateway: access,
                    parent_env: None,
                    on_event: &mut forward,
                },
            )
            .await;
            let report = session.report();
            let calls: Vec<_> = report.calls[calls_seen.min(report.calls.len())..].to_vec();
            calls_seen = report.calls.len();
            let mut iteration = IterationRecord {
                number,
                model: report.models.last().cloned(),
                cache_hit: false,
                usage: usage_of(&calls),
                calls,
                findings: Vec::new(),
                outcome: "agent_failed",
                rejected_as: None,
            };
            record.runs.push(RunRecord {
                round: number,
                argv: ended.argv.clone(),
                exit_code: ended.exit_code,
                duration_ms: ended.duration.as_millis() as u64,
                outcome: match &ended.outcome {
                    Ok(_) => "finished".to_string(),
                    Err(failure) => kind_of(failure.class).to_string(),
                },
            });
            record.transcript.extend(ended.transcript);
            let excess = record.transcript.len().saturating_sub(MAX_TRANSCRIPT);
            record.transcript.drain(..excess);
            if let Err(failure) = ended.outcome {
                run.details.iterations.push(iteration);
                run.verdict = Verdict::failure(
                    kind_of(failure.class),
                    format!(
                        "{} ({}): {}",
                        record.name,
                        spec.kind_name(),
                        failure.message
                    ),
                );
                return;
            }
            // pitcrew's own trouble is never the agent's: a worktree that vanished is a
            // workspace error, retried later.
            if !worktree.path().is_dir() {
                run.details.iterations.push(iteration);
                run.verdict = Verdict::failure(
                    ErrorKind::Workspace,
                    format!(
                        "the task's worktree {} is gone (deleted while the task ran)",
                        worktree.path().display()
                    ),
                );
                return;
            }
            on_event(AgentEvent::Validating);
            let (files, mut findings) = match take_changes(worktree).await {
                Ok(taken) => taken,
                Err(message) => {
                    run.details.iterations.push(iteration);
                    run.verdict = Verdict::failure(ErrorKind::Workspace, message);
                    return;
                }
            };
            if files.is_empty() && findings.is_empty() {
                iteration.outcome = "no_changes";
                run.details.iterations.push(iteration);
                run.verdict = Verdict::failure(
                    ErrorKind::NoChanges,
                    format!(
                        "{} finished without changing any file (whatever it said it did)",
                        record.name
                    ),
                );
                return;
            }
            run.written = files.clone();
            if !findings.iter().any(Finding::is_error) {
                let report = match self.agent.validate_files(task, worktree, &files).await {
                    Ok(report) => report,
                    Err(e) => {
                        run.details.iterations.push(iteration);
                        run.verdict = Verdict::failure(
                            ErrorKind::Config,
                            format!("validation could not run: {e}"),
                        );
                        return;
                    }
                };
                match run.take_validation(report, &mut findings) {
                    Outcome::Accepted => {
                        iteration.outcome = "accepted";
                        iteration.findings = findings.clone();
                        run.details.iterations.push(iteration);
                        run.findings = findings;
                        run.verdict = Verdict::Accepted;
                        return;
                    }
                    Outcome::PossibleBug if number == rounds => {
                        iteration.outcome = "possible_bug";
                        iteration.findings = findings.clone();
                        run.details.iterations.push(iteration);
                        run.verdict = Verdict::PossibleBug {
                            message: summary(&findings),
                        };
                        run.findings = findings;
                        return;
                    }
                    Outcome::PossibleBug => iteration.outcome = "possible_bug",
                    Outcome::Rejected => iteration.outcome = "rejected",
                }
            } else {
                iteration.outcome = "rejected";
            }
            let errors: Vec<Finding> = findings.iter().filter(|f| f.is_error()).cloned().collect();
            let policy = errors.iter().any(|f| f.rule == "change_set");
            let rejected_as = if policy {
                ErrorKind::PolicyViolation
            } else {
                ErrorKind::ValidationFailed
            };
            iteration.findings = findings.clone();
            iteration.rejected_as = Some(rejected_as);
            run.details.iterations.push(iteration);
            run.verdict = Verdict::failure(rejected_as, summary(&findings));
            run.findings = findings;
            if number < rounds {
                match library.render_agent_refinement(&errors, number, rounds) {
                    Ok(feedback) => message = format!("{prompt}\n\n{feedback}"),
                    Err(e) => {
                        run.verdict = Verdict::failure(ErrorKind::Config, e.to_string());
                        return;
                    }
                }
            }
        }
    }
}

/// An attempt's scratch directory (the agent's HOME, trajectories, the prompt file), removed
/// when the attempt ends in any way — also when it is dropped at a timeout or a stop — unless
/// worktrees are kept (`--keep-worktrees`).
struct Scratch {
    path: PathBuf,
    keep: bool,
}

impl Scratch {
    fn create(path: PathBuf, keep: bool) -> Result<Scratch, String> {
        std::fs::create_dir_all(&path)
            .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
        Ok(Scratch { path, keep })
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if !self.keep
            && let Err(e) = std::fs::remove_dir_all(&self.path)
        {
            tracing::warn!("cannot remove {}: {e}", self.path.display());
        }
    }
}

fn usage_of(calls: &[pitcrew_llm::CallRecord]) -> Usage {
    Usage {
        tokens_in: calls.iter().map(|c| c.usage.tokens_in).sum(),
        tokens_out: calls.iter().map(|c| c.usage.tokens_out).sum(),
        cost_usd: Some(calls.iter().map(|c| c.cost_usd).sum()),
    }
}

/// The agent's change set, made the only thing in the worktree besides the base commit: the
/// files it added or changed are read (regular files only, within the size bounds), the
/// worktree is reset to its base (which also removes what git ignores: caches, compiled
/// bytecode a test run would import, anything planted where `git status` does not look),
/// and exactly those bytes are written back. Returns the paths, and findings for what
/// cannot be taken (deletions, links, oversized files).
async fn take_changes(worktree: &Worktree) -> Result<(Vec<String>, Vec<Finding>), String> {
    let changes = worktree
        .changes()
        .await
        .map_err(|e| format!("cannot list the agent's changes: {e}"))?;
    let mut findings = Vec::new();
    for path in &changes.deleted {
        findings.push(
            Finding::error(
                "change_set",
                format!(
                    "`{path}` was deleted; pitcrew commits added and changed files only, so \
                     a task cannot delete files. Leave it in place"
                ),
            )
            .in_file(path),
        );
    }
    if changes.changed.len() > MAX_FILES_PER_REPLY {
        findings.push(Finding::error(
            "change_set",
            format!(
                "{} files were changed; at most {MAX_FILES_PER_REPLY} are taken from one task",
                changes.changed.len()
            ),
        ));
    }
    let mut taken: Vec<(String, Vec<u8>)> = Vec::new();
    for path in changes.changed.iter().take(MAX_FILES_PER_REPLY) {
        let full = worktree.path().join(path);
        let meta = std::fs::symlink_metadata(&full)
            .map_err(|e| format!("cannot read {}: {e}", full.display()))?;
        let problem = if meta.file_type().is_symlink() {
            Some("is a symbolic link; a task may only write regular files".to_string())
        } else if !meta.is_file() {
            Some("is not a regular file (a directory holding its own repository?)".to_string())
        } else if meta.len() > MAX_REPLY_FILE_BYTES as u64 {
            Some(format!(
                "is {} bytes; at most {MAX_REPLY_FILE_BYTES} are taken per file",
                meta.len()
            ))
        } else {
            None
        };
        if let Some(problem) = problem {
            findings
                .push(Finding::error("change_set", format!("`{path}` {problem}")).in_file(path));
            continue;
        }
        let bytes =
            std::fs::read(&full).map_err(|e| format!("cannot read {}: {e}", full.display()))?;
        taken.push((path.clone(), bytes));
    }
    worktree
        .reset()
        .await
        .map_err(|e| format!("cannot reset the worktree: {e}"))?;
    for (path, bytes) in &taken {
        let full: PathBuf = worktree.path().join(path);
        full.parent()
            .map_or(Ok(()), std::fs::create_dir_all)
            .and_then(|()| std::fs::write(&full, bytes))
            .map_err(|e| format!("cannot write {}: {e}", full.display()))?;
    }
    Ok((taken.into_iter().map(|(path, _)| path).collect(), findings))
}
