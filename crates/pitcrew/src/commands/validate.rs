//! `pitcrew validate`: the validation pipeline on files a user already has.

use std::process::ExitCode;

use pitcrew_core::TaskKind;
use pitcrew_validate::{Outcome, RuleStatus, ValidationRequest};

use crate::context::Context;
use crate::output::{self, usage};

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
    let base_commit = ctx.repo.resolve_commit("HEAD").await?;
    let report = pitcrew_validate::validate(
        &ctx.config.config.validation,
        &ValidationRequest {
            worktree: root.to_path_buf(),
            kind,
            targets,
            files,
            base_commit,
            cache_dir: ctx.repo.state_dir()?.join("cache"),
            parent_env: None,
        },
    )
    .await?;
    if json {
        output::json(&report);
    } else {
        for run in &report.rules {
            let status = match &run.status {
                RuleStatus::Ran { passed: true } => "passed".to_string(),
                RuleStatus::Ran { passed: false } => "FAILED".to_string(),
                RuleStatus::Skipped { reason } => format!("skipped: {reason}"),
            };
            output::line(&format!("{:<16} {status}", run.rule));
        }
        for finding in &report.findings {
            output::line(&format!("{} {finding}", finding.severity));
        }
        for gain in &report.coverage {
            output::line(&format!(
                "coverage of {}: {} → {} of {} lines; newly covered: {:?}",
                gain.target,
                gain.covered_before,
                gain.covered_after,
                gain.statements,
                gain.newly_covered
            ));
        }
        output::line(&format!(
            "outcome: {:?}, quality {:.2}",
            report.outcome, report.quality
        ));
    }
    Ok(if report.outcome == Outcome::Accepted {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
