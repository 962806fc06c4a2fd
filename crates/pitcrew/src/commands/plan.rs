//! `pitcrew plan unit-tests`: a batch of unit_test tasks for the modules that lack tests —
//! judged by a coverage report when one is given, else by the absence of a test file named
//! after the module (as the prompt names them) or importing it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::ExitCode;

use pitcrew_core::{NewTask, Priority, TaskKind};
use pitcrew_validate::{CoverageFormat, parse_coverage};
use serde::Serialize;

use crate::context::Context;
use crate::output::{self, usage};

#[derive(Debug, Serialize)]
struct Planned {
    target: String,
    reason: String,
}

/// Whether a Python file is a module worth testing (not a test, not packaging boilerplate).
fn is_module(path: &str) -> bool {
    let name = Path::new(path)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let in_tests = path
        .split('/')
        .any(|part| part == "tests" || part == "test");
    !(in_tests
        || name.starts_with("test_")
        || name.ends_with("_test.py")
        || matches!(name.as_str(), "conftest.py" | "setup.py" | "__main__.py"))
}

/// Whether pytest collects a file by its name (`test_*.py`, `*_test.py`).
fn is_test_file(path: &str) -> bool {
    let name = Path::new(path)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    name.ends_with(".py") && (name.starts_with("test_") || name.ends_with("_test.py"))
}

/// Whether a file holds any code (an empty `__init__.py` has nothing to test).
fn has_code(root: &Path, path: &str) -> bool {
    std::fs::read_to_string(root.join(path)).is_ok_and(|text| {
        text.lines()
            .map(str::trim)
            .any(|line| !line.is_empty() && !line.starts_with('#'))
    })
}

fn coverage_format(path: &Path, text: &str) -> CoverageFormat {
    match path.extension().and_then(|e| e.to_str()) {
        Some("json") => CoverageFormat::CoverageJson,
        Some("xml") => CoverageFormat::Cobertura,
        _ if text.trim_start().starts_with('{') => CoverageFormat::CoverageJson,
        _ if text.trim_start().starts_with('<') => CoverageFormat::Cobertura,
        _ => CoverageFormat::Lcov,
    }
}

#[allow(clippy::too_many_arguments)]
pub async fn unit_tests(
    ctx: &Context,
    path: &Path,
    coverage: Option<&Path>,
    below: f64,
    priority: Priority,
    dry_run: bool,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let root = ctx.repo.root();
    let scope = ctx
        .cwd
        .join(path)
        .canonicalize()
        .map_err(|e| usage(format!("{}: {e}", path.display())))?;
    let scope = scope
        .strip_prefix(root)
        .map_err(|_| {
            usage(format!(
                "{} is outside the repository {}",
                path.display(),
                root.display()
            ))
        })?
        .to_string_lossy()
        .into_owned();
    let base = ctx.repo.resolve_commit("HEAD").await?;
    let all = pitcrew_runtime::python_files(root);
    let files: BTreeSet<String> = all.iter().cloned().collect();
    let mut modules = Vec::new();
    for file in all
        .iter()
        .filter(|f| f.starts_with(&scope) && is_module(f) && has_code(root, f))
    {
        // Only modules at the base commit can be tested by a task.
        if ctx.repo.has_path(&base, file).await? {
            modules.push(file.clone());
        }
    }

    let mut planned = Vec::new();
    match coverage {
        Some(report) => {
            let text = std::fs::read_to_string(report)
                .map_err(|e| usage(format!("cannot read {}: {e}", report.display())))?;
            let parsed = parse_coverage(coverage_format(report, &text), &text)
                .map_err(|e| usage(format!("{}: {e}", report.display())))?;
            // Reports name files relative to where they ran, or absolutely.
            let by_path: BTreeMap<String, _> = parsed
                .into_iter()
                .map(|(name, cov)| {
                    let name = Path::new(&name)
                        .strip_prefix(root)
                        .map(|p| p.to_string_lossy().into_owned())
                        .unwrap_or(name);
                    (name, cov)
                })
                .collect();
            for module in &modules {
                let (executed, statements) = by_path.get(module).map_or((0, 0), |c| {
                    (c.executed.len(), c.executed.len() + c.missing.len())
                });
                if statements == 0 && by_path.contains_key(module) {
                    continue;
                }
                let percent = if statements == 0 {
                    0.0
                } else {
                    100.0 * executed as f64 / statements as f64
                };
                if percent < below {
                    planned.push(Planned {
                        target: module.clone(),
                        reason: if by_path.contains_key(module) {
                            format!("{percent:.0}% of {statements} lines covered")
                        } else {
                            "not in the coverage report".into()
                        },
                    });
                }
            }
        }
        None => {
            // A module is tested when a test file is named after it the way the prompt asks
            // for one (`tests/test_<module>.py`), or when an existing test file imports it.
            let imported: BTreeSet<String> = files
                .iter()
                .filter(|f| is_test_file(f))
                .flat_map(|test| pitcrew_runtime::imports_of(root, test, &files))
                .collect();
            for module in &modules {
                if pitcrew_runtime::tests_of(module, &files).is_empty()
                    && !imported.contains(module)
                {
                    planned.push(Planned {
                        target: module.clone(),
                        reason: "no test file names or imports it".into(),
                    });
                }
            }
        }
    }

    if dry_run || planned.is_empty() {
        if json {
            output::json(&planned);
        } else if planned.is_empty() {
            output::message(&format!(
                "nothing to plan: every module under {scope} has tests"
            ));
        } else {
            for p in &planned {
                output::line(&format!("{}  ({})", p.target, p.reason));
            }
            output::message(&format!(
                "{} task(s) would be submitted (--dry-run)",
                planned.len()
            ));
        }
        return Ok(ExitCode::SUCCESS);
    }
    let repo_url = ctx.repo_url().await;
    let tasks: Vec<NewTask> = planned
        .iter()
        .map(|p| NewTask {
            kind: TaskKind::UnitTest,
            description: format!("Write unit tests for {} ({}).", p.target, p.reason),
            targets: vec![p.target.clone()],
            repo: root.to_string_lossy().into_owned(),
            repo_url: repo_url.clone(),
            base_commit: base.clone(),
            priority,
            model: None,
            max_attempts: ctx.config.config.workers.max_attempts,
            // Planning twice does not queue the same module twice while it waits.
            idempotency_key: Some(format!("plan:unit-tests:{}", p.target)),
            metadata: serde_json::json!({"planned": p.reason}),
        })
        .collect();
    let submitted = ctx.store().await?.submit(&tasks).await?;
    if json {
        output::json(&submitted);
    } else {
        for (p, s) in planned.iter().zip(&submitted) {
            let note = if s.deduplicated {
                " (already queued)"
            } else {
                ""
            };
            output::line(&format!(
                "{}  {}  ({}){note}",
                output::handle(s.seq),
                p.target,
                p.reason
            ));
        }
        output::message(&format!(
            "submitted {} new task(s)",
            submitted.iter().filter(|s| !s.deduplicated).count()
        ));
    }
    Ok(ExitCode::SUCCESS)
}
