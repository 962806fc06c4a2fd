//! Checking tasks before they are queued. A [`TaskSpec`] as a user wrote it — on the command
//! line, in a batch file, in an HTTP request — becomes a [`NewTask`] only when its kind,
//! targets (inside the repository, present at the base commit for kinds that work on existing
//! files), base commit, preset, prompt template and numbers are right. A batch is checked whole:
//! every bad entry is reported, and the caller stores nothing unless all of them are good.

use std::collections::HashMap;
use std::path::{Component, Path, PathBuf};

use pitcrew_config::LoadedConfig;
use pitcrew_config::batch::TaskSpec;
use pitcrew_core::{NewTask, Priority, TaskKind};
use pitcrew_runtime::{PromptLibrary, Repo};

/// Why a task cannot be queued, in words for the person who wrote it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidTask(pub String);

/// Turns specs into tasks for one repository, resolving each base commit once.
#[derive(Debug)]
pub struct SubmissionChecker<'a> {
    repo: &'a Repo,
    config: &'a LoadedConfig,
    /// Where relative targets start: the directory a command was run in, or the repository
    /// root for requests that come from elsewhere.
    base_dir: PathBuf,
    /// The repository's remote, recorded so that workers elsewhere can find it.
    repo_url: Option<String>,
    commits: HashMap<String, String>,
}

impl<'a> SubmissionChecker<'a> {
    pub fn new(
        repo: &'a Repo,
        config: &'a LoadedConfig,
        base_dir: &Path,
        repo_url: Option<String>,
    ) -> Self {
        SubmissionChecker {
            repo,
            config,
            base_dir: base_dir.to_path_buf(),
            repo_url,
            commits: HashMap::new(),
        }
    }

    async fn commit(&mut self, rev: &str) -> Result<String, InvalidTask> {
        if let Some(commit) = self.commits.get(rev) {
            return Ok(commit.clone());
        }
        let root = self.repo.root().display();
        let commit = match self.repo.resolve_commit(rev).await {
            Ok(commit) => commit,
            Err(_) if self.repo.resolve_commit("HEAD").await.is_err() => {
                return Err(InvalidTask(format!(
                    "the repository {root} has no commits yet; commit the files the task works \
                     on first (`git add` them, then `git commit`): tasks start from a commit, \
                     never from uncommitted files"
                )));
            }
            Err(_) => {
                return Err(InvalidTask(format!(
                    "base `{rev}` is not a commit in {root}"
                )));
            }
        };
        self.commits.insert(rev.to_string(), commit.clone());
        Ok(commit)
    }

    /// A target as a path relative to the repository root.
    fn repo_path(&self, target: &str) -> Result<String, InvalidTask> {
        let root = self.repo.root();
        let base = self
            .base_dir
            .canonicalize()
            .unwrap_or_else(|_| self.base_dir.clone());
        let joined = base.join(target);
        let absolute = if joined.exists() {
            joined
                .canonicalize()
                .map_err(|e| InvalidTask(format!("target `{target}`: {e}")))?
        } else {
            // A file that does not exist yet: resolve `..` by its text.
            lexically_normal(&joined)
        };
        let relative = absolute.strip_prefix(root).map_err(|_| {
            InvalidTask(format!(
                "target `{target}` is outside the repository {}",
                root.display()
            ))
        })?;
        pitcrew_runtime::normalize(&relative.to_string_lossy())
            .map_err(|e| InvalidTask(format!("target `{target}`: {}", e.reason)))
    }

    /// The task `spec` describes, or the first thing wrong with it.
    pub async fn check(&mut self, spec: TaskSpec) -> Result<NewTask, InvalidTask> {
        let config = &self.config.config;
        let mut targets = Vec::new();
        for target in spec.target.iter().chain(&spec.targets) {
            targets.push(self.repo_path(target)?);
        }
        if spec.kind.needs_existing_targets() && targets.is_empty() {
            return Err(InvalidTask(format!(
                "a {} task needs at least one target file",
                spec.kind
            )));
        }
        let base_rev = spec.base.as_deref().unwrap_or("HEAD");
        let base = self.commit(base_rev).await?;
        if spec.kind.needs_existing_targets() {
            for target in &targets {
                let present = (self.repo.has_path(&base, target).await)
                    .map_err(|e| InvalidTask(e.to_string()))?;
                if !present {
                    return Err(InvalidTask(format!(
                        "target `{target}` does not exist at {base_rev} ({}); commit it first or fix the path",
                        &base[..12]
                    )));
                }
            }
        }
        let description = match (spec.description, spec.kind) {
            (Some(d), _) if !d.trim().is_empty() => d.trim().to_string(),
            (_, TaskKind::UnitTest) => format!("Write unit tests for {}.", targets.join(", ")),
            (_, TaskKind::IntegrationTest) => {
                format!("Write integration tests for {}.", targets.join(", "))
            }
            (_, TaskKind::Docs) => format!("Document {}.", targets.join(", ")),
            (_, kind) => {
                return Err(InvalidTask(format!(
                    "a {kind} task needs a description of what to do"
                )));
            }
        };
        if let Some(model) = &spec.model {
            self.config.resolve(Some(model)).map_err(|e| {
                InvalidTask(pitcrew_config::with_suggestion(
                    &e.to_string(),
                    &e.given,
                    &e.valid,
                ))
            })?;
        }
        let mut metadata = spec.metadata.unwrap_or_else(|| serde_json::json!({}));
        let Some(fields) = metadata.as_object_mut() else {
            return Err(InvalidTask("metadata must be a JSON object".into()));
        };
        if let Some(prompt) = spec.prompt {
            PromptLibrary::new(Some(self.repo))
                .source(&prompt)
                .map_err(|e| InvalidTask(e.to_string()))?;
            fields.insert("prompt".into(), prompt.into());
        }
        if let Some(complexity) = spec.complexity {
            fields.insert("complexity".into(), complexity.to_string().into());
        }
        if let Some(runtime) = spec.runtime {
            config.runtime_named(&runtime).map_err(InvalidTask)?;
            fields.insert("runtime".into(), runtime.into());
        }
        if spec.max_attempts == Some(0) {
            return Err(InvalidTask("max_attempts must be at least 1".into()));
        }
        if spec
            .idempotency_key
            .as_deref()
            .is_some_and(|k| k.trim().is_empty())
        {
            return Err(InvalidTask("idempotency key must not be empty".into()));
        }
        Ok(NewTask {
            kind: spec.kind,
            description,
            targets,
            repo: self.repo.root().to_string_lossy().into_owned(),
            repo_url: self.repo_url.clone(),
            base_commit: base,
            priority: spec.priority.unwrap_or(Priority::Normal),
            model: spec.model,
            max_attempts: spec.max_attempts.unwrap_or(config.workers.max_attempts),
            idempotency_key: spec.idempotency_key,
            metadata,
        })
    }

    /// The tasks of a batch, every entry checked: all of them, or the problem of every bad
    /// entry with its label (a line number, an index). An entry that could not even be read
    /// comes with its reason instead of a spec.
    pub async fn check_all<L>(
        &mut self,
        entries: impl IntoIterator<Item = (L, Result<TaskSpec, String>)>,
    ) -> Result<Vec<NewTask>, Vec<(L, String)>> {
        let mut tasks = Vec::new();
        let mut problems = Vec::new();
        for (label, entry) in entries {
            match entry {
                Ok(spec) => match self.check(spec).await {
                    Ok(task) => tasks.push(task),
                    Err(InvalidTask(reason)) => problems.push((label, reason)),
                },
                Err(reason) => problems.push((label, reason)),
            }
        }
        if problems.is_empty() {
            Ok(tasks)
        } else {
            Err(problems)
        }
    }
}

/// What a rejected batch says: nothing was queued, and each problem on a line of its own
/// (each saying which entry it is about).
pub fn batch_rejected(problems: &[String]) -> String {
    format!(
        "the batch was not submitted (nothing was queued) because of {} problem(s):\n  {}",
        problems.len(),
        problems.join("\n  ")
    )
}

/// `path` with `.` and `..` components resolved without touching the file system.
fn lexically_normal(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}
