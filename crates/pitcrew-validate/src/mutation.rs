//! `kills_mutants`: evidence that the new tests would notice if the code were wrong.
//!
//! Coverage says a test executes lines; it does not say the test checks them. Mutants of the
//! target's lines the new tests cover (see [`crate::mutants`]) are run against the new tests
//! in a scratch copy of the worktree, in the sandbox, in one Python process (the runner swaps
//! the file and runs pytest again, -x); a mutant the tests fail on is killed. The new
//! tests must kill at least `min_kills` mutants the existing suite does not: a mutant of a line
//! the existing suite never runs cannot be noticed by it, so those count at once; for the
//! others the existing suite runs against the mutant too (its verdicts are cached per base
//! commit). Surviving mutants become findings the model can act on.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use pitcrew_core::{Finding, sha256_hex};
use serde::{Deserialize, Serialize};

use crate::error::ValidateError;
use crate::mutants::{Mutant, mutants};
use crate::rules::Rule;
use crate::sandbox::{Sandbox, shell_quote};
use crate::settings::MutationSettings;

const RULE: &str = Rule::KillsMutants.as_str();

/// The runner, written into the scratch directory.
const RUNNER: &str = include_str!("mutation/runner.py");

/// The id the runner gives its control run on the unmutated file.
const CONTROL: &str = "__original__";

/// A mutant the new tests did not notice.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SurvivingMutant {
    pub line: u32,
    pub original: String,
    pub replacement: String,
}

/// What the mutation stage found for one target.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MutationSummary {
    pub target: String,
    /// Mutants run against the new tests.
    pub tried: usize,
    /// Of those, killed by the new tests (timeouts included).
    pub killed: usize,
    /// Killed by the new tests and not by the existing suite.
    pub killed_only_by_new: usize,
    /// Mutants the new tests did not notice, in line order.
    pub survived: Vec<SurvivingMutant>,
    /// Killed by running past the per-mutant time limit.
    pub timeouts: usize,
    /// Generated but not run: the budget ran out.
    pub not_run: usize,
    /// Wall time of the stage.
    pub seconds: f64,
}

impl MutationSummary {
    /// Killed over tried, when any ran.
    pub fn score(&self) -> Option<f64> {
        (self.tried > 0).then(|| self.killed as f64 / self.tried as f64)
    }
}

/// One line of the runner's results.
#[derive(Debug, Deserialize)]
struct RunnerResult {
    id: String,
    outcome: String,
}

/// The existing suite's verdicts per mutated source, for one base commit.
#[derive(Debug, Default, Serialize, Deserialize)]
struct SuiteVerdicts {
    /// SHA-256 of the mutated source → whether the existing suite killed it.
    killed: BTreeMap<String, bool>,
}

/// What the stage needs to know about the target and the runs so far.
#[derive(Debug)]
pub(crate) struct Subject<'a> {
    pub worktree: &'a Path,
    /// The target, relative to the worktree.
    pub target: &'a str,
    /// Lines of the target the new tests execute.
    pub covered_by_new: &'a BTreeSet<u32>,
    /// Lines of the target the existing suite executes at the base commit.
    pub covered_before: &'a BTreeSet<u32>,
    /// The new test files (pytest arguments).
    pub tests: &'a [String],
    /// How long the first run of the new tests took (sets the per-mutant limit).
    pub first_run: Duration,
    pub base_commit: &'a str,
    pub cache_dir: &'a Path,
}

/// Runs the mutation stage for one target; returns its summary and findings.
pub(crate) async fn kills_mutants(
    sandbox: &Sandbox<'_>,
    settings: &MutationSettings,
    subject: &Subject<'_>,
) -> Result<(MutationSummary, Vec<Finding>), ValidateError> {
    let started = Instant::now();
    let io = |context: String| move |source| ValidateError::Io { context, source };
    let source = std::fs::read_to_string(subject.worktree.join(subject.target))
        .map_err(io(format!("reading {}", subject.target)))?;
    let mut generated = mutants(
        &source,
        subject.covered_by_new,
        settings.seed,
        settings.max_mutants,
    );
    // Mutants of lines the existing suite never runs first: they need no suite run.
    generated.sort_by_key(|m| subject.covered_before.contains(&m.line));
    let dir = sandbox.scratch_path(&format!(
        "mutants-{}",
        sha256_hex(subject.target.as_bytes())
    ));
    let tree = dir.join("tree");
    std::fs::create_dir_all(&dir).map_err(io("creating the mutants directory".into()))?;
    copy_tree(subject.worktree, &tree).map_err(io("copying the worktree for mutants".into()))?;
    let runner = dir.join("pitcrew_mutants.py");
    std::fs::write(&runner, RUNNER).map_err(io("writing the mutation runner".into()))?;
    let mut sources = BTreeMap::new();
    for (i, mutant) in generated.iter().enumerate() {
        let path = dir.join(format!("mutant-{i}.py"));
        std::fs::write(&path, &mutant.source).map_err(io("writing a mutant".into()))?;
        sources.insert(mutant.id.clone(), path);
    }
    let deadline = SystemTime::now() + Duration::from_secs(settings.max_seconds);
    let per_mutant = (subject.first_run * 3).max(Duration::from_secs(2));
    let new_verdicts = run(
        sandbox,
        &Run {
            tree: &tree,
            runner: &runner,
            target: subject.target,
            tests: subject.tests,
            mutants: &generated,
            sources: &sources,
            per_mutant,
            deadline,
            label: "new",
        },
    )
    .await?;

    // The existing suite's verdict on mutants of lines it runs, cached per base commit.
    let cache_file = subject
        .cache_dir
        .join("mutants")
        .join(format!("{}.json", subject.base_commit));
    let mut cached: SuiteVerdicts = std::fs::read_to_string(&cache_file)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default();
    let killed_by_new = |m: &Mutant| {
        matches!(
            new_verdicts.get(&m.id).map(String::as_str),
            Some("killed" | "timeout")
        )
    };
    let fresh_kills = generated
        .iter()
        .filter(|m| !subject.covered_before.contains(&m.line) && killed_by_new(m))
        .count();
    let unknown: Vec<Mutant> = generated
        .iter()
        .filter(|m| {
            subject.covered_before.contains(&m.line)
                && killed_by_new(m)
                && !cached.killed.contains_key(&sha256_hex(m.source.as_bytes()))
        })
        .cloned()
        .collect();
    if fresh_kills < settings.min_kills && !unknown.is_empty() && SystemTime::now() < deadline {
        // The suite as the project configures it, without the new tests.
        let ignore_new: Vec<String> = subject
            .tests
            .iter()
            .map(|t| format!("--ignore={t}"))
            .collect();
        let suite = run(
            sandbox,
            &Run {
                tree: &tree,
                runner: &runner,
                target: subject.target,
                tests: &ignore_new,
                mutants: &unknown,
                sources: &sources,
                per_mutant: per_mutant * 4,
                deadline,
                label: "suite",
            },
        )
        .await?;
        for mutant in &unknown {
            if let Some(outcome) = suite.get(&mutant.id) {
                cached.killed.insert(
                    sha256_hex(mutant.source.as_bytes()),
                    outcome == "killed" || outcome == "timeout",
                );
            }
        }
        save(&cache_file, &cached)?;
    }
    let existing_missed = |m: &Mutant| {
        !subject.covered_before.contains(&m.line)
            || cached.killed.get(&sha256_hex(m.source.as_bytes())) == Some(&false)
    };

    // The runner's control: the new tests against the unmutated file must pass there as
    // they did in the first run, or its verdicts on mutants mean nothing.
    if let Some(control) = new_verdicts.get(CONTROL).filter(|o| *o != "survived") {
        let summary = MutationSummary {
            target: subject.target.to_string(),
            tried: 0,
            killed: 0,
            killed_only_by_new: 0,
            survived: Vec::new(),
            timeouts: 0,
            not_run: generated.len(),
            seconds: started.elapsed().as_secs_f64(),
        };
        let finding = Finding::warning(
            RULE,
            format!(
                "the mutants of `{}` could not be judged: the new tests did not pass against the \
                 unmutated file in the mutation runner ({control}), though they passed in their \
                 first run; pitcrew's runner does not reproduce how `{}` runs them",
                subject.target,
                sandbox.settings().test_command
            ),
        )
        .in_file(subject.target);
        return Ok((summary, vec![finding]));
    }
    let mut summary = MutationSummary {
        target: subject.target.to_string(),
        tried: 0,
        killed: 0,
        killed_only_by_new: 0,
        survived: Vec::new(),
        timeouts: 0,
        not_run: 0,
        seconds: 0.0,
    };
    for mutant in &generated {
        match new_verdicts.get(&mutant.id).map(String::as_str) {
            None | Some("error") => summary.not_run += 1,
            Some(outcome) => {
                summary.tried += 1;
                if outcome == "survived" {
                    summary.survived.push(SurvivingMutant {
                        line: mutant.line,
                        original: shortened(&mutant.original),
                        replacement: shortened(&mutant.replacement),
                    });
                    continue;
                }
                summary.killed += 1;
                summary.timeouts += usize::from(outcome == "timeout");
                summary.killed_only_by_new += usize::from(existing_missed(mutant));
            }
        }
    }
    summary.survived.sort_by_key(|s| s.line);
    summary.seconds = started.elapsed().as_secs_f64();
    let findings = judge(&summary, settings, subject.target, generated.is_empty());
    Ok((summary, findings))
}

/// The findings for a summary: an error when the new tests kill fewer than `min_kills`
/// mutants the existing suite misses (naming surviving mutants, which the model can act
/// on); otherwise the survivors as information.
fn judge(
    summary: &MutationSummary,
    settings: &MutationSettings,
    target: &str,
    none_generated: bool,
) -> Vec<Finding> {
    const SHOWN: usize = 5;
    let survivor = |s: &SurvivingMutant, severity_error: bool| {
        let message = format!(
            "this change to line {} went unnoticed by the new tests: `{}` → `{}`; add an \
             assertion that fails when it is made",
            s.line, s.original, s.replacement
        );
        let finding = if severity_error {
            Finding::error(RULE, message)
        } else {
            Finding::info(RULE, message)
        };
        finding.in_file(target).at_line(s.line)
    };
    if none_generated {
        return vec![
            Finding::info(
                RULE,
                format!("no mutant could be made of the lines of `{target}` the new tests run"),
            )
            .in_file(target),
        ];
    }
    if summary.tried == 0 {
        return vec![
            Finding::warning(
                RULE,
                format!(
                    "no mutant of `{target}` could be run within validation.mutation.max_seconds \
                     ({}s)",
                    settings.max_seconds
                ),
            )
            .in_file(target),
        ];
    }
    let score = summary.score().unwrap_or(0.0);
    let enough_new = summary.killed_only_by_new >= settings.min_kills;
    let enough = score >= settings.min_score;
    let passed = enough_new && enough;
    let mut findings = Vec::new();
    if !passed {
        let needed = match (enough_new, enough) {
            (false, true) => format!(
                "at least {} must be mutants the existing tests miss",
                settings.min_kills
            ),
            (true, false) => format!(
                "at least {:.0}% of them must be killed",
                settings.min_score * 100.0
            ),
            _ => format!(
                "at least {:.0}% must be killed, {} of them missed by the existing tests",
                settings.min_score * 100.0,
                settings.min_kills
            ),
        };
        findings.push(
            Finding::error(
                RULE,
                format!(
                    "the new tests kill {} of {} mutants of `{target}`, {} of them missed by the \
                     existing tests ({needed}): they run its lines without checking what those \
                     lines compute",
                    summary.killed, summary.tried, summary.killed_only_by_new
                ),
            )
            .in_file(target),
        );
    }
    // One per line first, so the few shown point at as many places as they can.
    let mut shown: Vec<&SurvivingMutant> = Vec::new();
    for s in &summary.survived {
        if shown.len() < SHOWN && !shown.iter().any(|t| t.line == s.line) {
            shown.push(s);
        }
    }
    for s in &summary.survived {
        if shown.len() < SHOWN && !shown.iter().any(|t| std::ptr::eq(*t, s)) {
            shown.push(s);
        }
    }
    shown.sort_by_key(|s| s.line);
    findings.extend(shown.iter().map(|s| survivor(s, !passed)));
    if summary.survived.len() > SHOWN {
        findings.push(
            Finding::info(
                RULE,
                format!("{} more mutants survived", summary.survived.len() - SHOWN),
            )
            .in_file(target),
        );
    }
    findings
}

/// Code quoted in a finding: one line, at most 120 characters.
fn shortened(code: &str) -> String {
    let line = code.split_whitespace().collect::<Vec<_>>().join(" ");
    match line.char_indices().nth(120) {
        Some((cut, _)) => format!("{}…", &line[..cut]),
        None => line,
    }
}

/// One runner invocation.
struct Run<'a> {
    tree: &'a Path,
    runner: &'a Path,
    target: &'a str,
    tests: &'a [String],
    mutants: &'a [Mutant],
    sources: &'a BTreeMap<String, PathBuf>,
    per_mutant: Duration,
    deadline: SystemTime,
    label: &'a str,
}

/// Runs `run.mutants` through the runner; returns the outcome per mutant id (mutants the
/// deadline left out are absent).
async fn run(
    sandbox: &Sandbox<'_>,
    run: &Run<'_>,
) -> Result<BTreeMap<String, String>, ValidateError> {
    let dir = run.runner.parent().unwrap_or(run.tree);
    let results = dir.join(format!("results-{}.jsonl", run.label));
    let spec_path = dir.join(format!("spec-{}.json", run.label));
    let deadline = run
        .deadline
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64();
    let spec = serde_json::json!({
        "target": run.target,
        "tests": run.tests,
        "mutants": run.mutants.iter().map(|m| serde_json::json!({
            "id": m.id,
            "source": run.sources[&m.id],
        })).collect::<Vec<_>>(),
        "timeout": run.per_mutant.as_secs_f64(),
        "deadline": deadline,
        "results": results,
    });
    std::fs::write(&spec_path, spec.to_string()).map_err(|source| ValidateError::Io {
        context: "writing the mutation spec".into(),
        source,
    })?;
    let command = format!(
        "{} {} {}",
        interpreter(&sandbox.settings().test_command),
        shell_quote(&run.runner.to_string_lossy()),
        shell_quote(&spec_path.to_string_lossy())
    );
    let remaining = run
        .deadline
        .duration_since(SystemTime::now())
        .unwrap_or_default();
    // The runner stops itself at the deadline; the extra time lets the last mutant finish.
    let limit = remaining + run.per_mutant + Duration::from_secs(5);
    let output = sandbox.shell_within(run.tree, &command, &[], limit).await?;
    let text = crate::reports::read_report(&results).unwrap_or_default();
    let verdicts: BTreeMap<String, String> = text
        .lines()
        .filter_map(|l| serde_json::from_str::<RunnerResult>(l).ok())
        .map(|r| (r.id, r.outcome))
        .collect();
    if verdicts.is_empty() && !run.mutants.is_empty() && !output.timed_out {
        tracing::warn!(
            "the mutation runner ran no mutant ({}): {}",
            output.describe_status(),
            output.combined_tail(10)
        );
    }
    Ok(verdicts)
}

/// The Python of `test_command` (`python3 -m pytest` → `python3`), else `python3`.
fn interpreter(test_command: &str) -> String {
    test_command
        .trim()
        .strip_suffix("-m pytest")
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .unwrap_or("python3")
        .to_string()
}

/// Copies `from` into `to`, leaving out the worktree's `.git` file. (Hard links would be
/// cheaper, but linking changes a file's `ctime`, which `worktree_unchanged` rightly reads as
/// a change.)
fn copy_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        if entry.file_name() == ".git" {
            continue;
        }
        let (source, dest) = (entry.path(), to.join(entry.file_name()));
        let kind = entry.file_type()?;
        if kind.is_dir() {
            copy_tree(&source, &dest)?;
        } else if kind.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(&source)?, &dest)?;
        } else {
            std::fs::copy(&source, &dest)?;
        }
    }
    Ok(())
}

fn save(path: &Path, verdicts: &SuiteVerdicts) -> Result<(), ValidateError> {
    let io = |source| ValidateError::Io {
        context: format!("caching mutant verdicts in {}", path.display()),
        source,
    };
    let dir = path.parent().expect("inside the cache dir");
    std::fs::create_dir_all(dir).map_err(io)?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(io)?;
    serde_json::to_writer(&mut tmp, verdicts).map_err(|e| io(e.into()))?;
    tmp.persist(path).map_err(|e| io(e.error))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_interpreter_comes_from_the_test_command() {
        assert_eq!(interpreter("python3 -m pytest"), "python3");
        assert_eq!(
            interpreter("/venv/bin/python -m pytest"),
            "/venv/bin/python"
        );
        assert_eq!(interpreter("pytest"), "python3");
    }

    fn summary(killed: usize, only_new: usize, survived: usize) -> MutationSummary {
        MutationSummary {
            target: "src/a.py".into(),
            tried: killed + survived,
            killed,
            killed_only_by_new: only_new,
            survived: (0..survived)
                .map(|i| SurvivingMutant {
                    line: 10 + i as u32,
                    original: "n > 0".into(),
                    replacement: "n >= 0".into(),
                })
                .collect(),
            timeouts: 0,
            not_run: 0,
            seconds: 1.0,
        }
    }

    #[test]
    fn too_few_kills_is_an_error_naming_survivors_and_enough_lists_them_as_information() {
        let settings = MutationSettings::default();
        let failing = judge(&summary(2, 0, 7), &settings, "src/a.py", false);
        assert!(failing[0].is_error());
        assert!(
            failing[0].message.contains("kill 2 of 9 mutants"),
            "{failing:?}"
        );
        let survivors: Vec<&Finding> = failing[1..].iter().filter(|f| f.is_error()).collect();
        assert_eq!(survivors.len(), 5);
        assert!(
            survivors[0]
                .message
                .contains("line 10 went unnoticed by the new tests: `n > 0` → `n >= 0`")
        );
        assert_eq!(survivors[0].line, Some(10));
        assert!(
            failing
                .last()
                .unwrap()
                .message
                .contains("2 more mutants survived")
        );

        let passing = judge(&summary(3, 1, 1), &settings, "src/a.py", false);
        assert!(passing.iter().all(|f| !f.is_error()), "{passing:?}");
        assert_eq!(summary(3, 1, 1).score(), Some(0.75));

        // Enough kills the existing tests miss, but most mutants survive.
        let weak = judge(&summary(2, 2, 6), &settings, "src/a.py", false);
        assert!(weak[0].is_error());
        assert!(
            weak[0]
                .message
                .contains("at least 50% of them must be killed"),
            "{weak:?}"
        );
    }
}
