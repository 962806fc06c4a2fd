//! `pitcrew submit`: one task from flags, or a batch from a .jsonl or .toml file. Every entry
//! is checked (kind, targets at the base commit, preset, paths) before anything is stored, and
//! the batch is stored in one transaction: all tasks or none.

use std::collections::HashMap;
use std::path::{Component, Path, PathBuf};
use std::process::ExitCode;

use pitcrew_config::batch::{BatchEntry, BatchFormat, TaskSpec, parse_batch};
use pitcrew_core::{NewTask, Priority, TaskKind};
use pitcrew_runtime::PromptLibrary;
use pitcrew_store::Submitted;

use crate::cli::SubmitArgs;
use crate::context::Context;
use crate::output::{self, usage};

/// Turns specs into tasks, resolving base commits once each.
struct Checker<'a> {
    ctx: &'a Context,
    commits: HashMap<String, String>,
    /// The repository's remote, recorded so that workers elsewhere can find it.
    repo_url: Option<String>,
}

impl Checker<'_> {
    async fn commit(&mut self, rev: &str) -> Result<String, String> {
        if let Some(commit) = self.commits.get(rev) {
            return Ok(commit.clone());
        }
        let root = self.ctx.repo.root().display();
        let commit = match self.ctx.repo.resolve_commit(rev).await {
            Ok(commit) => commit,
            Err(_) if self.ctx.repo.resolve_commit("HEAD").await.is_err() => {
                return Err(format!(
                    "the repository {root} has no commits yet; commit the files the task works \
                     on first (`git add` them, then `git commit`): tasks start from a commit, \
                     never from uncommitted files"
                ));
            }
            Err(_) => return Err(format!("base `{rev}` is not a commit in {root}")),
        };
        self.commits.insert(rev.to_string(), commit.clone());
        Ok(commit)
    }

    /// A target as a path relative to the repository root.
    fn repo_path(&self, target: &str) -> Result<String, String> {
        let root = self.ctx.repo.root();
        let cwd = self
            .ctx
            .cwd
            .canonicalize()
            .unwrap_or_else(|_| self.ctx.cwd.clone());
        let joined = cwd.join(target);
        let absolute = if joined.exists() {
            joined
                .canonicalize()
                .map_err(|e| format!("target `{target}`: {e}"))?
        } else {
            // A file that does not exist yet: resolve `..` by its text.
            lexically_normal(&joined)
        };
        let relative = absolute.strip_prefix(root).map_err(|_| {
            format!(
                "target `{target}` is outside the repository {}",
                root.display()
            )
        })?;
        pitcrew_runtime::normalize(&relative.to_string_lossy())
            .map_err(|e| format!("target `{target}`: {}", e.reason))
    }

    async fn check(&mut self, spec: TaskSpec) -> Result<NewTask, String> {
        let config = &self.ctx.config.config;
        let mut targets = Vec::new();
        for target in spec.target.iter().chain(&spec.targets) {
            targets.push(self.repo_path(target)?);
        }
        if spec.kind.needs_existing_targets() && targets.is_empty() {
            return Err(format!(
                "a {} task needs at least one target file",
                spec.kind
            ));
        }
        let base_rev = spec.base.as_deref().unwrap_or("HEAD");
        let base = self.commit(base_rev).await?;
        if spec.kind.needs_existing_targets() {
            for target in &targets {
                if !self
                    .ctx
                    .repo
                    .has_path(&base, target)
                    .await
                    .map_err(|e| e.to_string())?
                {
                    return Err(format!(
                        "target `{target}` does not exist at {base_rev} ({}); commit it first or fix the path",
                        &base[..12]
                    ));
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
            (_, kind) => return Err(format!("a {kind} task needs a description of what to do")),
        };
        if let Some(model) = &spec.model {
            self.ctx
                .config
                .resolve(Some(model))
                .map_err(|e| pitcrew_config::with_suggestion(&e.to_string(), &e.given, &e.valid))?;
        }
        let mut metadata = spec.metadata.unwrap_or_else(|| serde_json::json!({}));
        let Some(fields) = metadata.as_object_mut() else {
            return Err("metadata must be a JSON object".into());
        };
        if let Some(prompt) = spec.prompt {
            PromptLibrary::new(Some(&self.ctx.repo))
                .source(&prompt)
                .map_err(|e| e.to_string())?;
            fields.insert("prompt".into(), prompt.into());
        }
        if let Some(complexity) = spec.complexity {
            fields.insert("complexity".into(), complexity.to_string().into());
        }
        if spec.max_attempts == Some(0) {
            return Err("max_attempts must be at least 1".into());
        }
        if spec
            .idempotency_key
            .as_deref()
            .is_some_and(|k| k.trim().is_empty())
        {
            return Err("idempotency key must not be empty".into());
        }
        Ok(NewTask {
            kind: spec.kind,
            description,
            targets,
            repo: self.ctx.repo.root().to_string_lossy().into_owned(),
            repo_url: self.repo_url.clone(),
            base_commit: base,
            priority: spec.priority.unwrap_or(Priority::Normal),
            model: spec.model,
            max_attempts: spec.max_attempts.unwrap_or(config.workers.max_attempts),
            idempotency_key: spec.idempotency_key,
            metadata,
        })
    }
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

/// Reads a batch file into entries, or the one problem that stops reading it at all.
fn read_batch(path: &Path) -> Result<Vec<BatchEntry>, String> {
    let name = path.display().to_string();
    let extension = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    let format = BatchFormat::from_extension(&name, extension)?;
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {name}: {e}"))?;
    parse_batch(&name, &text, format)
}

/// The tasks of the batch `file`, every entry checked: all of them, or the problems of every
/// bad entry.
async fn checked_batch(checker: &mut Checker<'_>, file: &Path) -> anyhow::Result<Vec<NewTask>> {
    let entries = read_batch(file).map_err(|problem| usage(batch_rejected(&[problem])))?;
    if entries.is_empty() {
        return Err(usage(format!("{}: no tasks in the file", file.display())));
    }
    let mut tasks = Vec::with_capacity(entries.len());
    let mut problems = Vec::new();
    for (line, entry) in entries {
        match entry {
            Ok(spec) => match checker.check(spec).await {
                Ok(task) => tasks.push(task),
                Err(reason) => problems.push(format!("{}:{line}: {reason}", file.display())),
            },
            Err(reason) => problems.push(format!("{}:{line}: {reason}", file.display())),
        }
    }
    if !problems.is_empty() {
        return Err(usage(batch_rejected(&problems)));
    }
    Ok(tasks)
}

fn checker(ctx: &Context, repo_url: Option<String>) -> Checker<'_> {
    Checker {
        ctx,
        commits: HashMap::new(),
        repo_url,
    }
}

/// Checks the batch `file` and stores its tasks in one transaction (all or none), as
/// `pitcrew submit --file` does; the tasks and what the store made of them.
pub(super) async fn submit_file(
    ctx: &Context,
    file: &Path,
) -> anyhow::Result<(Vec<NewTask>, Vec<Submitted>)> {
    let tasks = checked_batch(&mut checker(ctx, ctx.repo_url().await), file).await?;
    let submitted = ctx.store().await?.submit(&tasks).await?;
    Ok((tasks, submitted))
}

pub async fn submit(ctx: &Context, args: SubmitArgs) -> anyhow::Result<ExitCode> {
    let (tasks, submitted) = if let Some(file) = &args.file {
        submit_file(ctx, file).await?
    } else {
        let metadata = args
            .metadata
            .as_deref()
            .map(serde_json::from_str)
            .transpose()
            .map_err(|e| usage(format!("--metadata is not valid JSON: {e}")))?;
        let spec = TaskSpec {
            kind: args.kind.expect("clap requires --kind or --file"),
            target: None,
            targets: args.targets,
            description: args.description,
            priority: Some(args.priority),
            model: args.model,
            idempotency_key: args.idempotency_key,
            max_attempts: args.max_attempts,
            base: Some(args.base),
            metadata,
            prompt: args.prompt,
            complexity: args.complexity,
        };
        let task = checker(ctx, ctx.repo_url().await)
            .check(spec)
            .await
            .map_err(usage)?;
        let submitted = ctx
            .store()
            .await?
            .submit(std::slice::from_ref(&task))
            .await?;
        (vec![task], submitted)
    };
    if args.format.json {
        output::json(&submitted);
    } else {
        print_submitted(&tasks, &submitted);
    }
    Ok(ExitCode::SUCCESS)
}

/// A line per task submitted (`#42  unit_test src/x.py  [normal]  (id)`), and how many were
/// new when there were several.
pub(super) fn print_submitted(tasks: &[NewTask], submitted: &[Submitted]) {
    for (task, result) in tasks.iter().zip(submitted) {
        let note = if result.deduplicated {
            " (already queued under this idempotency key)"
        } else {
            ""
        };
        output::line(&format!(
            "{}  {} {}  [{}]  ({}){note}",
            output::handle(result.seq),
            task.kind,
            task.targets.join(" "),
            task.priority,
            result.id
        ));
    }
    let new = submitted.iter().filter(|s| !s.deduplicated).count();
    if submitted.len() > 1 {
        output::message(&format!(
            "submitted {new} new task(s) of {}",
            submitted.len()
        ));
    }
}

fn batch_rejected(problems: &[String]) -> String {
    format!(
        "the batch was not submitted (nothing was queued) because of {} problem(s):\n  {}",
        problems.len(),
        problems.join("\n  ")
    )
}
