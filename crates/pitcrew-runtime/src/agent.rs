//! The built-in agent: prompt, model call (through the router), files read from the reply,
//! checked, written into the task's worktree and validated; when validation fails, the
//! findings go back to the model for another round, up to `max_iterations`. The agent reports
//! what it observed; it never claims success the checks did not show.

use std::borrow::Cow;
use std::path::PathBuf;
use std::time::Duration;

use pitcrew_core::{ErrorKind, Finding, Task, Usage, VerifiedFile};
use pitcrew_llm::{
    Budget, CallRecord, Complexity, Expect, Message, Requirements, RouteError, RouteEvent,
    RouteRequest, Router,
};
use pitcrew_validate::{
    FailingTest, Outcome, ValidationReport, ValidationRequest, ValidationSettings,
};
use serde::Serialize;

use crate::cache::{CachedReply, ReplyCache};
use crate::context::{ContextReport, ContextSettings, gather};
use crate::git::Worktree;
use crate::index::RepoIndexes;
use crate::paths::resolve_inside;
use crate::prompt::{PromptContext, PromptLibrary};
use crate::reply::extract_files;

/// Settings the agent takes from the configuration.
#[derive(Debug, Clone)]
pub struct AgentSettings {
    pub temperature: f64,
    pub max_tokens: u32,
    /// The preset a task prefers when it names none.
    pub default_model: String,
    /// Rounds of generation and validation before the attempt fails.
    pub max_iterations: u32,
    pub free_only: bool,
    /// USD one task may spend across its calls; `None`: no limit.
    pub task_budget_usd: Option<f64>,
    pub context: ContextSettings,
    pub validation: ValidationSettings,
    /// Reuse replies of identical earlier calls (`--cache`), kept in the repository's
    /// `.pitcrew/cache/replies`.
    pub use_cache: bool,
}

/// What the agent tells its caller while it works.
#[derive(Debug, Clone, Copy)]
pub enum AgentEvent<'a> {
    /// Round `number` of generation and validation begins.
    Iteration { number: u32 },
    /// A reply was taken from the cache instead of calling a model.
    CacheHit { model: &'a str },
    /// What the router reports: a call starts, streams, or fails.
    Model(RouteEvent<'a>),
    /// Validation of the written files begins.
    Validating,
    /// An external agent's event (`kind`: action, observation, error, …) or output line.
    Transcript { kind: &'a str, text: &'a str },
}

/// How the attempt ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Files written and every check passed.
    Accepted,
    /// A well-formed test that fails against the current code: kept for a human.
    PossibleBug { message: String },
    /// No acceptable output; `kind` decides whether the task is retried.
    Failed {
        kind: ErrorKind,
        message: String,
        retry_after: Option<Duration>,
    },
}

impl Verdict {
    /// A failure the provider gave no wait for.
    pub fn failure(kind: ErrorKind, message: impl Into<String>) -> Self {
        Verdict::Failed {
            kind,
            message: message.into(),
            retry_after: None,
        }
    }
}

/// One round of generation and validation, as recorded on the attempt.
#[derive(Debug, Clone, Serialize)]
pub struct IterationRecord {
    pub number: u32,
    /// The registry name of the model whose reply was used.
    pub model: Option<String>,
    pub cache_hit: bool,
    /// Every model call of the round, failed ones included.
    pub calls: Vec<CallRecord>,
    pub usage: Usage,
    pub findings: Vec<Finding>,
    /// accepted, possible_bug, rejected, unusable_reply, model_error.
    pub outcome: &'static str,
    /// Why the agent's checks refused the round's reply: a content kind for its own checks
    /// (paths, syntax, size, no files), `validation_failed` when validation did (a `rejected`
    /// round, or a `possible_bug` one that is refined). `None` when the reply was accepted or
    /// none came; a reply the router refused is told by its calls.
    pub rejected_as: Option<ErrorKind>,
}

/// Everything recorded about an attempt besides its verdict.
#[derive(Debug, Clone, Default, Serialize)]
pub struct AgentDetails {
    pub iterations: Vec<IterationRecord>,
    pub context: Option<ContextReport>,
    pub validation: Option<ValidationReport>,
    pub cache_hits: u32,
    /// What an external runtime did: its command lines, exit statuses, the gateway's
    /// requests and the agent's transcript. `None` for the built-in agent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub runtime: Option<serde_json::Value>,
    /// Tests removed from an accepted result because they failed on their own assertions
    /// against the code: a bug in the code or a wrong expectation, for a human to judge.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub possible_bugs: Vec<FailingTest>,
}

/// What one run of the agent produced and observed.
#[derive(Debug, Clone)]
pub struct AgentRun {
    pub verdict: Verdict,
    /// The registry name and provider id of the model whose reply was used last.
    pub model: Option<String>,
    pub model_id: Option<String>,
    /// Tokens and cost over every call, failed ones included; cache hits cost nothing.
    pub usage: Usage,
    /// The last answering call's latency.
    pub latency: Option<Duration>,
    /// The last round's findings.
    pub findings: Vec<Finding>,
    /// Files written into the worktree, relative to its root.
    pub written: Vec<String>,
    /// The files of an accepted result or possible bug as validation verified them: what
    /// may be committed.
    pub verified: Vec<VerifiedFile>,
    pub quality: Option<f64>,
    pub details: AgentDetails,
}

impl AgentRun {
    /// A run that has not produced anything yet (its verdict says so).
    pub fn new() -> Self {
        AgentRun {
            verdict: Verdict::failure(ErrorKind::Config, "no iteration ran"),
            model: None,
            model_id: None,
            usage: Usage::default(),
            latency: None,
            findings: Vec::new(),
            written: Vec::new(),
            verified: Vec::new(),
            quality: None,
            details: AgentDetails::default(),
        }
    }
}

impl AgentRun {
    /// Takes a round's validation in: its findings added to `findings`, its quality, the
    /// files it verified (unless it rejected them), the report kept; returns its outcome.
    pub fn take_validation(
        &mut self,
        report: ValidationReport,
        findings: &mut Vec<Finding>,
    ) -> Outcome {
        findings.extend(report.findings.iter().cloned());
        self.quality = Some(report.quality);
        let outcome = report.outcome;
        if outcome != Outcome::Rejected {
            self.verified = report.verified.clone();
        }
        self.details.validation = Some(report);
        outcome
    }
}

impl Default for AgentRun {
    fn default() -> Self {
        Self::new()
    }
}

fn add_usage(total: &mut Usage, more: Usage) {
    total.tokens_in += more.tokens_in;
    total.tokens_out += more.tokens_out;
    total.cost_usd = match (total.cost_usd, more.cost_usd) {
        (None, None) => None,
        (a, b) => Some(a.unwrap_or(0.0) + b.unwrap_or(0.0)),
    };
}

/// The error kind a static check's `error` finding stands for.
fn kind_of_rule(rule: &str) -> ErrorKind {
    match rule {
        "safe_path" => ErrorKind::UnsafePath,
        "syntax" => ErrorKind::SyntaxError,
        "no_files" => ErrorKind::NoFiles,
        "reply_size" => ErrorKind::ReplyTooLarge,
        _ => ErrorKind::MalformedReply,
    }
}

/// The errors among `findings`, one per line: the message a failed or doubtful verdict
/// carries.
pub fn summary(findings: &[Finding]) -> String {
    findings
        .iter()
        .filter(|f| f.is_error())
        .map(Finding::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

/// A reply's files, checked (paths, syntax) but not yet written.
struct Candidate {
    files: Vec<(String, PathBuf, String)>,
    findings: Vec<Finding>,
}

/// The most files one reply (or one external agent's run) may write: a task is a small
/// change.
pub const MAX_FILES_PER_REPLY: usize = 32;
/// The largest file a reply (or one external agent's run) may write.
pub const MAX_REPLY_FILE_BYTES: usize = 1024 * 1024;

fn read_reply(text: &str, worktree: &Worktree) -> Candidate {
    let extraction = extract_files(text);
    let mut findings = extraction.findings;
    if extraction.files.len() > MAX_FILES_PER_REPLY {
        findings.push(Finding::error(
            "reply_size",
            format!(
                "the reply writes {} files; at most {MAX_FILES_PER_REPLY} are accepted from one \
                 reply",
                extraction.files.len()
            ),
        ));
        return Candidate {
            files: Vec::new(),
            findings,
        };
    }
    if let Some(big) = (extraction.files.iter()).find(|f| f.content.len() > MAX_REPLY_FILE_BYTES) {
        findings.push(
            Finding::error(
                "reply_size",
                format!(
                    "the file is {} bytes; at most {MAX_REPLY_FILE_BYTES} are accepted",
                    big.content.len()
                ),
            )
            .in_file(big.path.clone()),
        );
        return Candidate {
            files: Vec::new(),
            findings,
        };
    }
    if extraction.files.is_empty() && !findings.iter().any(Finding::is_error) {
        findings.push(Finding::error(
            "no_files",
            "the reply contains no code block annotated with a file path \
             (expected e.g. ```python path=tests/test_example.py)",
        ));
    }
    let root = worktree
        .path()
        .canonicalize()
        .unwrap_or_else(|_| worktree.path().to_path_buf());
    let mut files = Vec::new();
    for file in extraction.files {
        let destination = match resolve_inside(worktree.path(), &file.path) {
            Ok(d) => d,
            Err(refused) => {
                findings.push(Finding::error("safe_path", refused.to_string()).in_file(file.path));
                continue;
            }
        };
        let relative = destination
            .strip_prefix(&root)
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_else(|_| file.path.clone());
        if let Some(finding) =
            pitcrew_validate::check_syntax(&relative, &file.content).to_finding(&relative)
        {
            findings.push(finding);
        }
        files.push((relative, destination, file.content));
    }
    Candidate { files, findings }
}

#[derive(Debug, Clone)]
pub struct BuiltinAgent {
    router: Router,
    settings: AgentSettings,
    indexes: RepoIndexes,
}

impl BuiltinAgent {
    /// An agent whose repository indexes are kept in pitcrew's cache.
    pub fn new(router: Router, settings: AgentSettings) -> Self {
        BuiltinAgent {
            router,
            settings,
            indexes: RepoIndexes::default(),
        }
    }

    pub fn router(&self) -> &Router {
        &self.router
    }

    /// Works `task` in `worktree`.
    pub async fn run(
        &self,
        task: &Task,
        worktree: &Worktree,
        on_event: &mut (dyn FnMut(AgentEvent<'_>) + Send),
    ) -> AgentRun {
        let mut run = AgentRun::new();
        // Coverage baselines and cached replies are kept per repository.
        let cache_dir = match worktree.repo().cache_dir() {
            Ok(dir) => dir,
            Err(e) => {
                run.verdict = Verdict::failure(
                    ErrorKind::Workspace,
                    format!("cannot create pitcrew's cache directory: {e}"),
                );
                return run;
            }
        };
        let cache = self
            .settings
            .use_cache
            .then(|| ReplyCache::new(cache_dir.join("replies")));
        let library = PromptLibrary::new(Some(worktree.repo()));
        let (context, context_report) = match self.context(task, worktree).await {
            Ok(gathered) => gathered,
            Err(verdict) => {
                run.verdict = verdict;
                return run;
            }
        };
        run.details.context = Some(context_report);
        let (system, user) = match library.render_task(task, &context) {
            Ok(messages) => messages,
            Err(e) => {
                run.verdict = Verdict::failure(ErrorKind::Config, e.to_string());
                return run;
            }
        };
        let mut messages = vec![Message::system(system), Message::user(user)];
        let task_budget = Budget::new(self.settings.task_budget_usd);

        for number in 1..=self.settings.max_iterations {
            on_event(AgentEvent::Iteration { number });
            let mut record = IterationRecord {
                number,
                model: None,
                cache_hit: false,
                calls: Vec::new(),
                usage: Usage::default(),
                findings: Vec::new(),
                outcome: "model_error",
                rejected_as: None,
            };
            let request = RouteRequest {
                messages: messages.clone(),
                temperature: self.settings.temperature,
                expect: Expect::Code,
                requirements: self.requirements(task),
                task_budget: Some(task_budget.clone()),
                wait_until: None,
            };
            let reply = match self
                .reply(&request, cache.as_ref(), &mut record, &mut run, on_event)
                .await
            {
                Ok(text) => text,
                Err(error) => {
                    let content = error.kind.class() == pitcrew_core::ErrorClass::Content;
                    record.outcome = if content {
                        "unusable_reply"
                    } else {
                        "model_error"
                    };
                    run.details.iterations.push(record);
                    run.verdict = Verdict::Failed {
                        kind: error.kind,
                        message: error.message,
                        retry_after: error.retry_after,
                    };
                    // Every model gave unusable replies: another round with the same
                    // messages may go better; anything else ends the attempt.
                    if content && number < self.settings.max_iterations {
                        continue;
                    }
                    return run;
                }
            };

            // A fresh worktree needs no reset; later rounds start from the base again.
            let earlier_round_touched_it = number > 1;
            if earlier_round_touched_it && let Err(e) = worktree.reset().await {
                run.details.iterations.push(record);
                run.verdict = Verdict::failure(
                    ErrorKind::Workspace,
                    format!("cannot reset the worktree: {e}"),
                );
                return run;
            }
            // pitcrew's own trouble is never the model's: a worktree that vanished (deleted
            // while the task ran) fails the attempt as a workspace error, retried later.
            if !worktree.path().is_dir() {
                run.details.iterations.push(record);
                run.verdict = Verdict::failure(
                    ErrorKind::Workspace,
                    format!(
                        "the task's worktree {} is gone (deleted while the task ran)",
                        worktree.path().display()
                    ),
                );
                return run;
            }
            let candidate = read_reply(&reply, worktree);
            let mut findings = candidate.findings;
            run.written.clear();
            if !findings.iter().any(Finding::is_error) {
                for (relative, destination, content) in &candidate.files {
                    let written = destination
                        .parent()
                        .map_or(Ok(()), std::fs::create_dir_all)
                        .and_then(|()| std::fs::write(destination, content));
                    if let Err(e) = written {
                        run.details.iterations.push(record);
                        run.verdict = Verdict::failure(
                            ErrorKind::Workspace,
                            format!("cannot write {relative}: {e}"),
                        );
                        return run;
                    }
                    run.written.push(relative.clone());
                }
                on_event(AgentEvent::Validating);
                let validation = self
                    .validate(task, worktree, &run.written, &cache_dir)
                    .await;
                let report = match validation {
                    Ok(report) => report,
                    Err(e) => {
                        // The checks themselves could not run (pytest missing, a broken
                        // suite): not the output's fault, and retrying will not help.
                        run.details.iterations.push(record);
                        run.verdict = Verdict::failure(
                            ErrorKind::Config,
                            format!("validation could not run: {e}"),
                        );
                        return run;
                    }
                };
                if let Some(model) = &record.model
                    && !record.cache_hit
                {
                    self.router.record_quality(model, report.quality);
                }
                match run.take_validation(report, &mut findings) {
                    Outcome::Accepted => {
                        record.outcome = "accepted";
                        record.findings = findings.clone();
                        run.details.iterations.push(record);
                        run.findings = findings;
                        run.verdict = Verdict::Accepted;
                        return run;
                    }
                    // Rounds are left: the model sees the values the code gave, and may fix
                    // its expectations (or keep them, if the code is wrong).
                    Outcome::PossibleBug if number < self.settings.max_iterations => {
                        record.outcome = "possible_bug";
                    }
                    Outcome::PossibleBug => {
                        record.outcome = "possible_bug";
                        record.findings = findings.clone();
                        run.details.iterations.push(record);
                        run.findings = findings.clone();
                        // Keep what passes: the failing tests go, with their failures kept
                        // for a human, and the rest must pass every check on its own.
                        if self
                            .keep_passing(task, worktree, &cache_dir, number, &mut run, on_event)
                            .await
                        {
                            return run;
                        }
                        run.verdict = Verdict::PossibleBug {
                            message: summary(&findings),
                        };
                        return run;
                    }
                    Outcome::Rejected => record.outcome = "rejected",
                }
            } else {
                record.outcome = "rejected";
            }

            let first_error = findings
                .iter()
                .find(|f| f.is_error())
                .map(|f| f.rule.clone())
                .unwrap_or_default();
            let static_failure = run.details.validation.is_none() || run.written.is_empty();
            let rejected_as = if static_failure {
                kind_of_rule(&first_error)
            } else {
                ErrorKind::ValidationFailed
            };
            record.findings = findings.clone();
            record.rejected_as = Some(rejected_as);
            run.details.iterations.push(record);
            run.verdict = Verdict::failure(rejected_as, summary(&findings));
            run.findings = findings.clone();
            if number < self.settings.max_iterations {
                let errors: Vec<Finding> = findings.into_iter().filter(Finding::is_error).collect();
                match library.render_refinement(&errors, number, self.settings.max_iterations) {
                    Ok(feedback) => {
                        messages.push(Message::assistant(reply));
                        messages.push(Message::user(feedback));
                    }
                    Err(e) => {
                        run.verdict = Verdict::failure(ErrorKind::Config, e.to_string());
                        return run;
                    }
                }
            }
        }
        run
    }

    /// What the router is asked for on `task`'s behalf: its kind and complexity, the model it
    /// prefers (else the configured default), the settings' output limit and free-only rule.
    pub fn requirements(&self, task: &Task) -> Requirements {
        let complexity = task
            .metadata
            .get("complexity")
            .and_then(|c| c.as_str())
            .and_then(|c| c.parse().ok())
            .unwrap_or(Complexity::Medium);
        Requirements {
            kind: Some(task.kind),
            complexity,
            max_output_tokens: self.settings.max_tokens,
            free_only: self.settings.free_only,
            prefer: Some(
                task.model
                    .clone()
                    .unwrap_or_else(|| self.settings.default_model.clone()),
            ),
            ..Requirements::default()
        }
    }

    pub fn settings(&self) -> &AgentSettings {
        &self.settings
    }

    /// The context `task`'s prompt shows (from the repository index of the worktree's base),
    /// with the validation rules its kind must pass.
    async fn context(
        &self,
        task: &Task,
        worktree: &Worktree,
    ) -> Result<(PromptContext, ContextReport), Verdict> {
        let index = self.indexes.of(worktree).await.map_err(|e| {
            Verdict::failure(
                ErrorKind::Workspace,
                format!("cannot index the repository at {}: {e}", worktree.base()),
            )
        })?;
        let (mut context, report) = gather(
            worktree.path(),
            &task.targets,
            &self.settings.context,
            &index,
        );
        context.rules = self.settings.validation.requirements(task.kind);
        Ok((context, report))
    }

    /// The task as an external agent is told it: the same context as the built-in agent's
    /// prompt, without the reply format (an agent edits files in place).
    pub async fn agent_prompt(
        &self,
        task: &Task,
        worktree: &Worktree,
    ) -> Result<(String, ContextReport), Verdict> {
        let (context, report) = self.context(task, worktree).await?;
        let library = PromptLibrary::new(Some(worktree.repo()));
        let prompt = library
            .render_agent_task(task, &context)
            .map_err(|e| Verdict::failure(ErrorKind::Config, e.to_string()))?;
        Ok((prompt, report))
    }

    /// Validates `files` (the whole change set, relative to the worktree) as `task` asks,
    /// with the same settings and cached baselines as the built-in agent's rounds.
    pub async fn validate_files(
        &self,
        task: &Task,
        worktree: &Worktree,
        files: &[String],
    ) -> Result<ValidationReport, String> {
        let cache_dir = worktree
            .repo()
            .cache_dir()
            .map_err(|e| format!("cannot create pitcrew's cache directory: {e}"))?;
        self.validate(task, worktree, files, &cache_dir)
            .await
            .map_err(|e| e.to_string())
    }

    /// Validates `files` in `worktree` as `task` asks.
    async fn validate(
        &self,
        task: &Task,
        worktree: &Worktree,
        files: &[String],
        cache_dir: &std::path::Path,
    ) -> Result<ValidationReport, pitcrew_validate::ValidateError> {
        pitcrew_validate::validate(
            &self.settings.validation,
            &ValidationRequest {
                worktree: worktree.path().to_path_buf(),
                repo: worktree.repo().root().to_path_buf(),
                kind: task.kind,
                targets: task.targets.clone(),
                files: files.to_vec(),
                base_commit: task.base_commit.clone(),
                cache_dir: cache_dir.to_path_buf(),
                parent_env: None,
            },
        )
        .await
    }

    /// After the last round ended with tests failing on their own assertions: removes those
    /// tests from the written files and validates the rest on its own. When the rest passes
    /// every check, the run is accepted with it, and the removed tests (with the values the
    /// code gave) are kept in [`AgentDetails::possible_bugs`]; otherwise the files are put
    /// back as they were validated and `false` is returned.
    async fn keep_passing(
        &self,
        task: &Task,
        worktree: &Worktree,
        cache_dir: &std::path::Path,
        round: u32,
        run: &mut AgentRun,
        on_event: &mut (dyn FnMut(AgentEvent<'_>) + Send),
    ) -> bool {
        let Some(report) = run.details.validation.clone() else {
            return false;
        };
        let failing: Vec<String> = report
            .failing_tests
            .iter()
            .map(|f| f.test.clone())
            .collect();
        let mut originals = Vec::new();
        for path in &run.written {
            if !report.failing_tests.iter().any(|f| f.file == *path) {
                continue;
            }
            let full = worktree.path().join(path);
            let Ok(source) = std::fs::read_to_string(&full) else {
                break;
            };
            let Some(pruned) = pitcrew_validate::without_tests(path, &source, &failing) else {
                originals.clear();
                break;
            };
            originals.push((full, source, pruned));
        }
        if originals.is_empty() {
            return false;
        }
        let restore = |originals: &[(PathBuf, String, String)]| {
            for (full, source, _) in originals {
                if let Err(e) = std::fs::write(full, source) {
                    tracing::warn!("cannot restore {}: {e}", full.display());
                }
            }
        };
        for (full, _, pruned) in &originals {
            if std::fs::write(full, pruned).is_err() {
                restore(&originals);
                return false;
            }
        }
        on_event(AgentEvent::Validating);
        let pruned = match self.validate(task, worktree, &run.written, cache_dir).await {
            Ok(pruned) if pruned.is_accepted() => pruned,
            _ => {
                restore(&originals);
                return false;
            }
        };
        run.details.iterations.push(IterationRecord {
            number: round,
            model: run.model.clone(),
            cache_hit: false,
            calls: Vec::new(),
            usage: Usage::default(),
            findings: pruned.findings.clone(),
            outcome: "accepted_without_failing_tests",
            rejected_as: None,
        });
        run.details.possible_bugs = report.failing_tests;
        run.verified = pruned.verified.clone();
        run.quality = Some(pruned.quality);
        run.findings = pruned.findings.clone();
        run.details.validation = Some(pruned);
        run.verdict = Verdict::Accepted;
        true
    }

    /// The reply to `request`: from the cache when enabled and present, else from the router
    /// (storing it in the cache).
    async fn reply(
        &self,
        request: &RouteRequest,
        cache: Option<&ReplyCache>,
        record: &mut IterationRecord,
        run: &mut AgentRun,
        on_event: &mut (dyn FnMut(AgentEvent<'_>) + Send),
    ) -> Result<String, RouteError> {
        let key = cache.map(|_| {
            ReplyCache::key(
                request.requirements.prefer.as_deref().unwrap_or(""),
                &serde_json::json!({
                    "messages": request.messages,
                    "temperature": request.temperature,
                    "max_tokens": request.requirements.max_output_tokens,
                }),
            )
        });
        if let (Some(cache), Some(key)) = (cache, &key)
            && let Some(hit) = cache.get(key)
        {
            on_event(AgentEvent::CacheHit { model: &hit.model });
            record.cache_hit = true;
            record.model = Some(hit.model.clone());
            run.details.cache_hits += 1;
            run.model_id = self.router.registry().get(&hit.model).map(|m| m.id.clone());
            run.model = Some(hit.model);
            return Ok(hit.text);
        }
        let result = self
            .router
            .complete(request, &mut |event| on_event(AgentEvent::Model(event)))
            .await;
        let (calls, usage) = match &result {
            Ok(routed) => (routed.calls.clone(), routed.usage()),
            Err(error) => (error.calls.clone(), error.usage()),
        };
        record.calls = calls;
        record.usage = usage;
        add_usage(&mut run.usage, usage);
        let routed = result?;
        record.model = Some(routed.model.clone());
        run.model = Some(routed.model.clone());
        run.model_id = Some(routed.model_id.clone());
        run.latency = Some(routed.completion.latency);
        // A reply that quotes a secret is not kept on disk, where nothing redacts it.
        let holds_secret = matches!(pitcrew_core::redact(&routed.completion.text), Cow::Owned(_));
        if let (Some(cache), Some(key), false) = (cache, &key, holds_secret) {
            let entry = CachedReply {
                model: routed.model.clone(),
                text: routed.completion.text.clone(),
                original_usage: usage,
            };
            if let Err(e) = cache.put(key, &entry) {
                tracing::warn!("could not store a reply in the cache: {e}");
            }
        }
        Ok(routed.completion.text)
    }
}
