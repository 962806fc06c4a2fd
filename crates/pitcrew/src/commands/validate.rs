//! `pitcrew validate`: the validation pipeline on files a user already has. It never runs
//! anything in the user's checkout: the files (and every tracked file the user changed) are
//! copied into a temporary worktree at HEAD, which is validated and removed.

use std::process::ExitCode;

use anyhow::Context as _;
use pitcrew_core::TaskKind;
use pitcrew_runtime::{Repo, Worktree};
use pitcrew_validate::{Outcome, RuleStatus, ValidationReport, ValidationRequest};

use crate::context::Context;
use crate::output::{self, usage};
use crate::signals;

pub async fn validate(
    ctx: &Context,
    paths: &[String],
    targets: &[String],
    kind: TaskKind,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let root = ctx.repo.root();
    let relative = |given: &str| -> anyhow::Result<String> {
        let absolute = ctx.cwd.join(given);
        let absolute = absolute
            .canonicalize()
            .map_err(|e| usage(format!("{given}: {e}")))?;
        let inside = absolute.strip_prefix(root).map_err(|_| {
            usage(format!(
                "{given} is outside the repository {}",
                root.display()
            ))
        })?;
        Ok(inside.to_string_lossy().into_owned())
    };
    let files = paths
        .iter()
        .map(|p| relative(p))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let targets = targets
        .iter()
        .map(|t| relative(t))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let settings = &ctx.config.config.validation;
    pitcrew_validate::preflight(settings).await?;
    let base_commit = ctx.repo.resolve_commit("HEAD").await?;
    let dir = ctx.repo.worktrees_dir().join(format!(
        "validate-{}-{:08x}",
        std::process::id(),
        fastrand::u32(..)
    ));
    let worktree = ctx.repo.add_worktree(&dir, &base_commit).await?;
    let validated = async {
        copy_changes(&ctx.repo, &worktree, &files).await?;
        let request = ValidationRequest {
            worktree: worktree.path().to_path_buf(),
            repo: root.to_path_buf(),
            kind,
            targets,
            files,
            base_commit,
            cache_dir: ctx.repo.cache_dir()?,
            parent_env: None,
        };
        anyhow::Ok(pitcrew_validate::validate(settings, &request).await?)
    };
    // On SIGINT/SIGTERM the validation is dropped, which kills its sandboxed commands and
    // removes its scratch directory; the worktree goes below.
    let report = tokio::select! {
        report = validated => Some(report),
        () = signals::first() => None,
    };
    if let Err(e) = ctx.repo.remove_worktree(&dir).await {
        output::message(&format!(
            "warning: could not remove the worktree {}: {e}",
            dir.display()
        ));
    }
    let Some(report) = report else {
        output::message("interrupted; nothing was validated");
        return Ok(ExitCode::from(130));
    };
    let report = report?;
    print(&report, json);
    Ok(if report.outcome == Outcome::Accepted {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Puts the user's version of `files` and of every tracked file they changed into
/// `worktree` (which is at HEAD), so the validation sees their working tree.
async fn copy_changes(repo: &Repo, worktree: &Worktree, files: &[String]) -> anyhow::Result<()> {
    let mut paths = repo.modified_paths().await?;
    paths.extend(files.iter().cloned());
    for path in paths {
        let from = repo.root().join(&path);
        let to = worktree.path().join(&path);
        if from.is_file() {
            if let Some(parent) = to.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::copy(&from, &to).with_context(|| format!("copying {path}"))?;
        } else if to.is_file() && !from.exists() {
            std::fs::remove_file(&to).with_context(|| format!("removing {path}"))?;
        }
    }
    Ok(())
}

fn print(report: &ValidationReport, json: bool) {
    if json {
        output::json(report);
        return;
    }
    for run in &report.rules {
        let status = match &run.status {
            RuleStatus::Ran { passed: true } => "passed".to_string(),
            RuleStatus::Ran { passed: false } => "FAILED".to_string(),
            RuleStatus::Skipped { reason } => format!("skipped: {reason}"),
        };
        output::line(&format!("{:<18} {status}", run.rule));
    }
    for finding in &report.findings {
        output::line(&format!("{} {finding}", finding.severity));
    }
    output::line("evidence:");
    for line in report.card() {
        output::line(&format!("  {line}"));
    }
    output::line(&format!("outcome: {:?}", report.outcome));
}
