//! The existing suite at the base commit (its failures and coverage, measured once per base
//! commit and cached), coverage reports of this run, and the gain between them.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use pitcrew_core::Finding;
use serde::{Deserialize, Serialize};

use crate::checks::line_ranges;
use crate::effects::Listing;
use crate::error::ValidateError;
use crate::pytest::{self, Invocation, Order};
use crate::report::CoverageGain;
use crate::reports::{CaseResult, Coverage, parse_coverage};
use crate::rules::Rule;
use crate::sandbox::{Sandbox, shell_quote};
use crate::settings::{CoverageFormat, ValidationSettings};

/// The existing suite's results at a base commit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Baseline {
    pub commit: String,
    /// What measured it (see [`Baseline::key`]); a cached baseline measured another way is
    /// measured again.
    pub key: String,
    /// How many test cases the suite had.
    pub tests: usize,
    /// Ids of the tests that failed or errored.
    pub failing: BTreeSet<String>,
    /// Line coverage by path relative to the repository root, when measured.
    pub coverage: Option<Coverage>,
    /// Files the suite itself creates when it runs: they are tolerated by
    /// `worktree_unchanged`.
    pub creates: Vec<String>,
    /// How long each test that passed took, by id: `suite_green` names the tests a change
    /// makes much slower.
    pub durations_ms: BTreeMap<String, u64>,
}

impl Baseline {
    fn key(settings: &ValidationSettings, with_coverage: bool) -> String {
        // The version: baselines measured before `durations_ms` existed are measured again.
        let version = 4;
        let command = if with_coverage {
            format!(
                "{}\n{}\n{:?}",
                settings.coverage_command,
                settings.coverage_report_command,
                settings.coverage_format
            )
        } else {
            settings.test_command.clone()
        };
        format!("v{version}\n{command}")
    }
}

/// The baseline for `commit`, from `cache_dir` when it was measured the same way before,
/// otherwise by running the suite in a fresh export of the commit (never in the worktree,
/// whose files the task changed).
pub(crate) async fn baseline(
    sandbox: &Sandbox<'_>,
    repo: &Path,
    commit: &str,
    cache_dir: &Path,
    with_coverage: bool,
) -> Result<Baseline, ValidateError> {
    let settings = sandbox.settings();
    let key = Baseline::key(settings, with_coverage);
    let cache_file = cache_dir.join("baselines").join(format!("{commit}.json"));
    // Validations of tasks on one base commit often start together; the first measures,
    // the others wait and read its result.
    let lock = measuring_lock(&cache_file);
    let _measuring = lock.lock().await;
    if let Ok(text) = std::fs::read_to_string(&cache_file)
        && let Ok(cached) = serde_json::from_str::<Baseline>(&text)
        && cached.key == key
        && cached.commit == commit
    {
        tracing::debug!(%commit, "coverage baseline from cache");
        return Ok(cached);
    }

    let checkout = sandbox.scratch_path("base");
    crate::repo::export(
        repo,
        commit,
        &checkout,
        &sandbox.scratch_path("base.tar"),
        Duration::from_secs(settings.timeout_secs),
    )
    .await?;
    let before = Listing::of(&checkout);
    let data = sandbox.scratch_path("coverage-base.data");
    let invocation = Invocation {
        label: "base",
        files: &[],
        order: Order::File,
        hash_seed: 0,
        coverage_data: with_coverage.then_some(data.as_path()),
    };
    let run = pytest::run(sandbox, &checkout, &invocation).await?;
    let creates = Listing::of(&checkout).created_since(&before);
    let failure = |message: String| ValidateError::Baseline {
        commit: commit.to_string(),
        message,
    };
    if run.output.timed_out {
        return Err(failure(format!(
            "`{}` {}",
            run.command,
            run.timeout_message()
        )));
    }
    let Some(cases) = run.cases else {
        return Err(failure(format!(
            "`{}` wrote no test report ({}):\n{}",
            run.command,
            run.output.describe_status(),
            run.output.combined_tail(20)
        )));
    };
    let coverage = if with_coverage && !cases.is_empty() {
        Some(coverage_report(sandbox, &checkout, &data, "base").await?)
    } else {
        // An empty suite covers nothing; coverage.py would refuse to report no data.
        with_coverage.then(Coverage::new)
    };
    let baseline = Baseline {
        commit: commit.to_string(),
        key,
        tests: cases.len(),
        failing: cases
            .iter()
            .filter(|c| {
                matches!(
                    c.result,
                    CaseResult::Failed { .. } | CaseResult::Errored { .. }
                )
            })
            .map(pytest::test_id)
            .collect(),
        coverage,
        creates,
        durations_ms: cases
            .iter()
            .filter(|c| c.result == CaseResult::Passed)
            .filter_map(|c| Some((pytest::test_id(c), c.duration_ms?)))
            .collect(),
    };
    save(&cache_file, &baseline)?;
    Ok(baseline)
}

/// One lock per cache file, shared by the validations running in this process.
fn measuring_lock(cache_file: &Path) -> Arc<tokio::sync::Mutex<()>> {
    static LOCKS: LazyLock<Mutex<HashMap<PathBuf, Arc<tokio::sync::Mutex<()>>>>> =
        LazyLock::new(Mutex::default);
    let mut locks = LOCKS.lock().unwrap_or_else(PoisonError::into_inner);
    Arc::clone(locks.entry(cache_file.to_path_buf()).or_default())
}

/// Atomically (write, then rename), so a concurrent validation never reads half a file.
fn save(path: &Path, baseline: &Baseline) -> Result<(), ValidateError> {
    let io = |source| ValidateError::Io {
        context: format!("caching the baseline in {}", path.display()),
        source,
    };
    let dir = path
        .parent()
        .expect("the cache file is inside the cache dir");
    std::fs::create_dir_all(dir).map_err(io)?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(io)?;
    serde_json::to_writer(&mut tmp, baseline).map_err(|e| io(e.into()))?;
    tmp.persist(path).map_err(|e| io(e.error))?;
    Ok(())
}

/// Runs the coverage report command on `data` in `cwd` and reads the report, which must be
/// written by this call: a fresh path, and modified after the command started.
pub(crate) async fn coverage_report(
    sandbox: &Sandbox<'_>,
    cwd: &Path,
    data: &Path,
    label: &str,
) -> Result<Coverage, ValidateError> {
    let settings = sandbox.settings();
    let extension = match settings.coverage_format {
        CoverageFormat::CoverageJson => "json",
        CoverageFormat::Cobertura => "xml",
        CoverageFormat::Lcov => "info",
    };
    let report = sandbox.scratch_path(&format!("coverage-{label}.{extension}"));
    let command = settings
        .coverage_report_command
        .replace("{data}", &shell_quote(&data.to_string_lossy()))
        .replace("{report}", &shell_quote(&report.to_string_lossy()));
    // Filesystem timestamps can be coarser than the clock; allow for that.
    let started = SystemTime::now() - Duration::from_secs(2);
    let out = sandbox.shell(cwd, &command, &[]).await?;
    let fail = |message: String| ValidateError::Coverage { message };
    if !out.success() {
        return Err(fail(format!(
            "`{command}` failed ({}):\n{}",
            out.describe_status(),
            out.combined_tail(10)
        )));
    }
    let fresh = std::fs::metadata(&report)
        .and_then(|m| m.modified())
        .is_ok_and(|modified| modified >= started);
    if !fresh {
        return Err(fail(format!(
            "`{command}` did not write {} during this run",
            report.display()
        )));
    }
    let text = crate::reports::read_report(&report)
        .map_err(|e| fail(format!("cannot read {}: {e}", report.display())))?;
    let coverage =
        parse_coverage(settings.coverage_format, &text).map_err(|e| fail(e.to_string()))?;
    Ok(relative_to(coverage, cwd))
}

/// Report paths made relative to `root` (tools write absolute or `./`-prefixed paths too).
fn relative_to(coverage: Coverage, root: &Path) -> Coverage {
    let canonical = root.canonicalize().ok();
    let mut out = Coverage::new();
    for (path, file) in coverage {
        let p = Path::new(&path);
        let relative = [Some(root), canonical.as_deref()]
            .into_iter()
            .flatten()
            .find_map(|r| p.strip_prefix(r).ok())
            .map(|r| r.to_string_lossy().into_owned())
            .unwrap_or_else(|| path.trim_start_matches("./").to_string());
        let entry = out.entry(relative).or_default();
        entry.executed.extend(file.executed);
        entry.missing.extend(file.missing);
    }
    for file in out.values_mut() {
        let executed = file.executed.clone();
        file.missing.retain(|l| !executed.contains(l));
    }
    out
}

/// The `coverage_gain` findings and the per-target figures. A target the new tests never
/// executed is an error; the rule passes when at least one target gained a line (targets
/// without gain then get a warning). A target the existing suite already covered
/// completely cannot gain: that is a warning, not an error.
pub(crate) fn gain(
    targets: &[String],
    before: &Coverage,
    after: &Coverage,
) -> (Vec<CoverageGain>, Vec<Finding>) {
    const RULE: &str = Rule::CoverageGain.as_str();
    let empty = Default::default();
    let mut gains = Vec::new();
    let mut findings = Vec::new();
    let mut not_run = Vec::new();
    for target in targets {
        let Some(now) = after.get(target) else {
            not_run.push(target);
            continue;
        };
        let base = before.get(target).unwrap_or(&empty);
        let statements: BTreeSet<u32> = now
            .executed
            .iter()
            .chain(&now.missing)
            .chain(&base.executed)
            .copied()
            .collect();
        let covered: BTreeSet<u32> = base.executed.union(&now.executed).copied().collect();
        gains.push(CoverageGain {
            target: target.clone(),
            covered_before: base.executed.len(),
            covered_after: covered.len(),
            statements: statements.len(),
            newly_covered: now.executed.difference(&base.executed).copied().collect(),
            still_uncovered: statements.difference(&covered).copied().collect(),
        });
    }
    for target in not_run {
        findings.push(
            Finding::error(
                RULE,
                format!(
                    "the new tests never executed `{target}`: import it and call its functions"
                ),
            )
            .in_file(target),
        );
    }
    let any_gain = gains.iter().any(|g| !g.newly_covered.is_empty());
    for g in &gains {
        let at = |f: Finding| f.in_file(&g.target);
        if !g.newly_covered.is_empty() {
            let rest = if g.still_uncovered.is_empty() {
                "every line is now covered".to_string()
            } else {
                format!("still uncovered: {}", line_ranges(&g.still_uncovered))
            };
            findings.push(at(Finding::info(
                RULE,
                format!(
                    "the new tests cover {} lines of `{}` the existing tests did not: {} \
                     (now {} of {} lines; {rest})",
                    g.newly_covered.len(),
                    g.target,
                    line_ranges(&g.newly_covered),
                    g.covered_after,
                    g.statements
                ),
            )));
        } else if g.still_uncovered.is_empty() {
            findings.push(at(Finding::warning(
                RULE,
                format!(
                    "the existing tests already cover every line of `{}`; no gain was possible",
                    g.target
                ),
            )));
        } else {
            let message = format!(
                "the new tests cover no line of `{}` that the existing tests did not already \
                 cover; still uncovered: {}: write tests that run those lines",
                g.target,
                line_ranges(&g.still_uncovered)
            );
            findings.push(at(if any_gain {
                Finding::warning(RULE, message)
            } else {
                Finding::error(RULE, message)
            }));
        }
    }
    (gains, findings)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reports::FileCoverage;

    fn cov(entries: &[(&str, &[u32], &[u32])]) -> Coverage {
        entries
            .iter()
            .map(|(path, executed, missing)| {
                let file = FileCoverage {
                    executed: executed.iter().copied().collect(),
                    missing: missing.iter().copied().collect(),
                };
                (path.to_string(), file)
            })
            .collect()
    }

    #[test]
    fn gain_lists_newly_covered_and_still_uncovered_lines() {
        let before = cov(&[("src/calc.py", &[1, 2, 4], &[5, 6, 7, 9])]);
        let after = cov(&[("src/calc.py", &[1, 4, 5, 6], &[2, 7, 9])]);
        let (gains, findings) = gain(&["src/calc.py".into()], &before, &after);
        assert_eq!(
            gains,
            [CoverageGain {
                target: "src/calc.py".into(),
                covered_before: 3,
                covered_after: 5,
                statements: 7,
                newly_covered: vec![5, 6],
                still_uncovered: vec![7, 9],
            }]
        );
        assert_eq!(findings.len(), 1);
        assert!(!findings[0].is_error());
        assert!(
            findings[0].message.contains("5-6"),
            "{}",
            findings[0].message
        );
    }

    #[test]
    fn no_gain_is_an_error_unless_nothing_was_left_to_cover() {
        let before = cov(&[("a.py", &[1, 2], &[3]), ("b.py", &[1], &[])]);
        let after = cov(&[("a.py", &[1], &[2, 3]), ("b.py", &[1], &[])]);
        let (_, findings) = gain(&["a.py".into(), "b.py".into()], &before, &after);
        assert!(findings[0].is_error());
        assert!(
            findings[0].message.contains("still uncovered: 3"),
            "{}",
            findings[0].message
        );
        assert_eq!(findings[1].severity, pitcrew_core::Severity::Warning);

        let (_, findings) = gain(&["c.py".into()], &before, &after);
        assert!(findings[0].message.contains("never executed `c.py`"));
    }

    #[test]
    fn report_paths_become_relative_to_the_run_directory() {
        let root = tempfile::tempdir().unwrap();
        let absolute = root
            .path()
            .join("src/calc.py")
            .to_string_lossy()
            .into_owned();
        let coverage = relative_to(
            cov(&[(&absolute, &[1], &[2]), ("./src/calc.py", &[2], &[3])]),
            root.path(),
        );
        assert_eq!(coverage, cov(&[("src/calc.py", &[1, 2], &[3])]));
    }
}
