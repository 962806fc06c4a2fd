//! [`validate`]: the rules in order, cheap before expensive, each recorded as ran or skipped
//! with the reason, and the verdict drawn from what they found.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use pitcrew_core::{Finding, TaskKind, VerifiedFile};

use crate::Language;
use crate::changes::{self, Change};
use crate::dynamic::{self, Expected, Verdict};
use crate::effects::{self, Listing};
use crate::error::ValidateError;
use crate::mutation::{self, MutationSummary};
use crate::pytest::{self, Invocation, Order};
use crate::report::{
    CoverageGain, Evidence, FailingTest, Outcome, RuleRun, RuleStatus, StageTime, ValidationReport,
    quality,
};
use crate::reports::Coverage;
use crate::rules::Rule;
use crate::sandbox::Sandbox;
use crate::settings::ValidationSettings;
use crate::testfns::{Written, test_functions};
use crate::{checks, commands, coverage};

/// What to validate.
#[derive(Debug, Clone)]
pub struct ValidationRequest {
    /// The task's worktree: every command runs here, confined to it.
    pub worktree: PathBuf,
    /// The repository the worktree belongs to: the base commit is read from here (git never
    /// runs in the worktree, whose files generated code may have written).
    pub repo: PathBuf,
    pub kind: TaskKind,
    /// The source files under test, relative to the worktree.
    pub targets: Vec<String>,
    /// The files the task wrote, relative to the worktree: its whole change set.
    pub files: Vec<String>,
    /// The commit the worktree started from: the existing suite is run there for the
    /// coverage baseline and the failures that predate the task.
    pub base_commit: String,
    /// Where baselines are kept between validations (one file per base commit).
    pub cache_dir: PathBuf,
    /// The variables commands' allowlisted environment is drawn from; `None`: this
    /// process's environment.
    pub parent_env: Option<Vec<(OsString, OsString)>>,
}

/// Runs every rule selected for the request's task kind on its files and draws the verdict.
///
/// Order: change_set, file_exists, not_empty, syntax, toolchain, test_naming, assertions,
/// test_integrity, imports_target, no_placeholders, the project's command rules,
/// tests_pass, not_flaky, coverage_gain, suite_green, worktree_unchanged. The static rules
/// always run (on the files that got far enough); every command-running rule after them runs
/// only while no rule found an error, so a broken or forbidden file costs no test run and is
/// never executed. The existing suite's baseline is measured (or read from the cache)
/// alongside the first test run. The report lists the files judged with the SHA-256 of the
/// bytes judged ([`ValidationReport::verified`]).
///
/// `Err` means no verdict could be reached for reasons that are not the output's fault: a
/// setting, a missing tool, a machine that cannot confine generated code, the existing suite
/// unable to run at the base commit.
pub async fn validate(
    settings: &ValidationSettings,
    request: &ValidationRequest,
) -> Result<ValidationReport, ValidateError> {
    settings.check()?;
    let scratch = tempfile::Builder::new()
        .prefix("pitcrew-validate-")
        .tempdir()
        .map_err(|source| ValidateError::Io {
            context: "creating the scratch directory".into(),
            source,
        })?;
    let sandbox = Sandbox::new(
        settings,
        request.parent_env.as_deref(),
        scratch.path(),
        &request.worktree,
    )
    .await?;
    let mut p = Pipeline {
        settings,
        request,
        findings: Vec::new(),
        rules: Vec::new(),
        verified: Vec::new(),
        stages: Vec::new(),
    };
    let started = Instant::now();
    let files = checks_before_tests(&mut p, &sandbox).await?;
    p.time("static checks", started);
    let tested = test_rules(&mut p, &sandbox, &files).await?;
    if p.begin(Rule::WorktreeUnchanged.as_str(), Ok(())) {
        // Without a command run, only the judged files are read again.
        let unlisted = Listing::default();
        let (before, after) = match sandbox.worktree_before_commands() {
            Some(before) => (before, Listing::of(&request.worktree)),
            None => (&unlisted, Listing::default()),
        };
        let expected = tested.suite_creates.clone();
        let findings = effects::judge(&request.worktree, before, &after, &p.verified, &expected);
        p.record(Rule::WorktreeUnchanged.as_str(), findings);
    }
    Ok(p.finish(&sandbox, tested))
}

/// The rules that judge the written files without running tests: the static rules, the
/// toolchain gate and the project's command rules. Returns the files as read and parsed.
async fn checks_before_tests(
    p: &mut Pipeline<'_>,
    sandbox: &Sandbox<'_>,
) -> Result<Vec<Written>, ValidateError> {
    let request = p.request;
    let worktree = request.worktree.as_path();
    let (mut files, missing, empty) = checks::read_files(worktree, &request.files);
    p.verified = files
        .iter()
        .map(|f| VerifiedFile::of(&f.path, f.source.as_bytes()))
        .collect();
    // Parsed before the change set is judged, which compares tests with the base commit.
    let syntax = checks::syntax(&mut files);
    if p.begin(Rule::ChangeSet.as_str(), Ok(())) {
        let paths: Vec<&str> = request.files.iter().map(String::as_str).collect();
        let timeout = Duration::from_secs(p.settings.timeout_secs);
        let base =
            crate::repo::files_at(&request.repo, &request.base_commit, &paths, timeout).await?;
        let changes: Vec<Change> = paths
            .iter()
            .zip(&base)
            .map(|(path, base)| Change {
                path,
                now: files.iter().find(|f| f.path == *path),
                base: base.as_deref(),
            })
            .collect();
        let findings = changes::judge(&p.settings.changes, request.kind, worktree, &changes);
        p.record(Rule::ChangeSet.as_str(), findings);
    }
    if p.begin(Rule::FileExists.as_str(), Ok(())) {
        p.record(Rule::FileExists.as_str(), missing);
    }
    if p.begin(Rule::NotEmpty.as_str(), Ok(())) {
        p.record(Rule::NotEmpty.as_str(), empty);
    }
    let any_file = if files.is_empty() {
        Err("no written file could be read".to_string())
    } else {
        Ok(())
    };
    if p.begin(Rule::Syntax.as_str(), any_file.clone()) {
        p.record(Rule::Syntax.as_str(), syntax);
    }
    let parsed = if files.iter().any(|f| f.tree.is_some()) {
        Ok(())
    } else {
        Err("no written file passed the syntax gate".to_string())
    };
    if p.begin(Rule::Toolchain.as_str(), parsed.clone()) {
        match commands::toolchain(sandbox, worktree, &files).await? {
            Some(findings) => p.record(Rule::Toolchain.as_str(), findings),
            None => p.skip(
                Rule::Toolchain.as_str(),
                "no toolchain command is configured for the written files' languages",
            ),
        }
    }
    if p.begin(Rule::TestNaming.as_str(), parsed.clone()) {
        let expect_tests = matches!(request.kind, TaskKind::UnitTest | TaskKind::IntegrationTest);
        p.record(
            Rule::TestNaming.as_str(),
            checks::test_naming(&files, expect_tests),
        );
    }
    let any_tests = parsed.and_then(|()| {
        if files.iter().any(|f| f.tree.is_some() && f.is_test()) {
            Ok(())
        } else {
            Err("no test file among the written files".to_string())
        }
    });
    if p.begin(Rule::Assertions.as_str(), any_tests.clone()) {
        p.record(Rule::Assertions.as_str(), checks::assertions(&files));
    }
    if p.begin(Rule::TestIntegrity.as_str(), any_tests.clone()) {
        p.record(Rule::TestIntegrity.as_str(), checks::test_integrity(&files));
    }
    let targeted = if request.targets.is_empty() {
        Err("the task names no target".to_string())
    } else {
        any_tests
    };
    if p.begin(Rule::ImportsTarget.as_str(), targeted) {
        p.record(
            Rule::ImportsTarget.as_str(),
            checks::imports_target(&files, &request.targets),
        );
    }
    if p.begin(Rule::NoPlaceholders.as_str(), any_file) {
        p.record(
            Rule::NoPlaceholders.as_str(),
            checks::no_placeholders(&files),
        );
    }
    let written: Vec<&str> = files.iter().map(|f| f.path.as_str()).collect();
    for rule in &p.settings.commands {
        if p.begin(&rule.id, p.no_errors_yet()) {
            let findings = commands::command_rule(sandbox, worktree, rule, &written).await?;
            p.record(&rule.id, findings);
        }
    }
    Ok(files)
}

/// What the rules that run tests concluded beyond their findings.
#[derive(Debug, Default)]
struct Tested {
    possible_bug: bool,
    coverage: Vec<CoverageGain>,
    /// What the existing suite creates when it runs, when its baseline was measured.
    suite_creates: Vec<String>,
    /// One summary per Python target, when `kills_mutants` ran.
    mutation: Vec<MutationSummary>,
    /// Test cases of the new files the first run reported, and how many passed.
    tests: (usize, usize),
    /// The reruns the new tests passed, in words.
    rerun_orders: Vec<String>,
    /// New tests that failed on their own assertions.
    own_failures: Vec<FailingTest>,
}

/// tests_pass, not_flaky, coverage_gain and suite_green: pytest on the written Python test
/// files, the existing suite at the base commit alongside, then the whole suite.
async fn test_rules(
    p: &mut Pipeline<'_>,
    sandbox: &Sandbox<'_>,
    files: &[Written],
) -> Result<Tested, ValidateError> {
    let (settings, request) = (p.settings, p.request);
    let worktree = request.worktree.as_path();
    let python_tests: Vec<&Written> = files
        .iter()
        .filter(|f| f.tree.is_some() && f.is_test() && f.language == Some(Language::Python))
        .collect();
    let test_paths: Vec<String> = python_tests.iter().map(|f| f.path.clone()).collect();
    let expected: Vec<Expected> = python_tests
        .iter()
        .flat_map(|f| {
            test_functions(f)
                .into_iter()
                .filter(|t| t.not_run.is_none())
                .map(|t| Expected {
                    file: f.path.clone(),
                    class: t.class,
                    name: t.name,
                    line: t.line,
                })
        })
        .collect();
    let python_targets: Vec<String> = request
        .targets
        .iter()
        .filter(|t| Language::from_path(t) == Some(Language::Python))
        .cloned()
        .collect();

    let tests_ready = p.no_errors_yet().and_then(|()| {
        if test_paths.is_empty() {
            Err("no Python test file among the written files (the test rules run pytest)".into())
        } else {
            Ok(())
        }
    });
    let run_tests = p.begin(Rule::TestsPass.as_str(), tests_ready);
    let want_coverage = run_tests
        && (p.selected(Rule::CoverageGain) || p.selected(Rule::KillsMutants))
        && !python_targets.is_empty();
    let want_baseline =
        p.no_errors_yet().is_ok() && (want_coverage || p.selected(Rule::SuiteGreen));
    let after_data = sandbox.scratch_path("coverage-after.data");
    let first_invocation = Invocation {
        label: "first",
        files: &test_paths,
        order: Order::File,
        hash_seed: 0,
        coverage_data: want_coverage.then_some(after_data.as_path()),
    };
    // The baseline runs elsewhere (an export of the base commit): alongside the first run.
    let started = Instant::now();
    let (first, baseline) = tokio::join!(
        async {
            if run_tests {
                Some(pytest::run(sandbox, worktree, &first_invocation).await)
            } else {
                None
            }
        },
        async {
            if want_baseline {
                let commit = &request.base_commit;
                let cache = &request.cache_dir;
                let repo = &request.repo;
                Some(coverage::baseline(sandbox, repo, commit, cache, want_coverage).await)
            } else {
                None
            }
        }
    );
    let (first, baseline) = (first.transpose()?, baseline.transpose()?);
    if first.is_some() {
        p.time("first run", started);
    }

    let mut verdict = None;
    let mut collected = (0, 0);
    let mut own_failures = Vec::new();
    if let Some(first) = &first {
        let (findings, v) = dynamic::judge_first_run(first, &expected, &test_paths);
        p.record(Rule::TestsPass.as_str(), findings);
        verdict = Some(v);
        collected = dynamic::new_test_counts(first, &test_paths);
        own_failures = dynamic::own_failures(first, &test_paths);
    }
    let rerun_ready = match verdict {
        None => Err("tests_pass did not run".to_string()),
        Some(Verdict::Broken) => Err("the new tests did not run cleanly".to_string()),
        Some(_) if settings.reruns == 0 => Err("validation.reruns is 0".to_string()),
        Some(_) => Ok(()),
    };
    // The mutants need the coverage of the first run, not the reruns: they run alongside.
    let mutation_wanted = verdict == Some(Verdict::Passed)
        && want_coverage
        && p.selected(Rule::KillsMutants)
        && p.no_errors_yet().is_ok();
    // The reruns and the coverage report of the first run are independent.
    let started = Instant::now();
    let rerun = async {
        if p.begin(Rule::NotFlaky.as_str(), rerun_ready) {
            let cases = first
                .as_ref()
                .and_then(|f| f.cases.as_deref())
                .unwrap_or_default();
            Some(dynamic::reruns(sandbox, worktree, cases, &test_paths, settings.reruns).await)
        } else {
            None
        }
    };
    let first_run = first.as_ref().map_or(Duration::ZERO, |f| f.output.duration);
    let report_after = async {
        if !(want_coverage && verdict == Some(Verdict::Passed)) {
            return (None, None);
        }
        let after = coverage::coverage_report(sandbox, worktree, &after_data, "after").await;
        let mutation = match (&after, mutation_wanted) {
            (Ok(after), true) => {
                let started = Instant::now();
                let before = baseline.as_ref().and_then(|b| b.coverage.as_ref());
                let result = mutate(
                    sandbox,
                    request,
                    after,
                    before,
                    &python_targets,
                    &test_paths,
                    first_run,
                )
                .await;
                Some(result.map(|r| (r, started.elapsed())))
            }
            _ => None,
        };
        (Some(after), mutation)
    };
    let (rerun, (after, mutation)) = tokio::join!(rerun, report_after);
    let (rerun, after, mutation) = (
        rerun.transpose()?,
        after.transpose()?,
        mutation.transpose()?,
    );
    let reproducible = rerun.as_ref().is_none_or(Vec::is_empty);
    let rerun_orders = match &rerun {
        Some(findings) if !findings.iter().any(Finding::is_error) => {
            dynamic::rerun_orders(settings.reruns)
        }
        _ => Vec::new(),
    };
    if let Some(findings) = rerun {
        p.time("reruns", started);
        p.record(Rule::NotFlaky.as_str(), findings);
    }
    let mut tested = Tested {
        possible_bug: verdict == Some(Verdict::OwnAssertionsFailed) && reproducible,
        coverage: Vec::new(),
        suite_creates: baseline
            .as_ref()
            .map(|b| b.creates.clone())
            .unwrap_or_default(),
        mutation: Vec::new(),
        tests: collected,
        rerun_orders,
        own_failures,
    };

    let coverage_ready = match (verdict, python_targets.is_empty()) {
        (_, true) => Err("no Python target to measure".to_string()),
        (None, _) => Err("tests_pass did not run".to_string()),
        (Some(Verdict::OwnAssertionsFailed), _) => {
            Err("the new tests fail against the current code".to_string())
        }
        (Some(_), false) => p.no_errors_yet(),
    };
    if p.begin(Rule::CoverageGain.as_str(), coverage_ready.clone()) {
        let before = baseline
            .as_ref()
            .and_then(|b| b.coverage.as_ref())
            .expect("measured with coverage: coverage_gain was selected before the first run");
        let after = after
            .as_ref()
            .expect("reported: the first run passed under coverage");
        let (gains, findings) = coverage::gain(&python_targets, before, after);
        tested.coverage = gains;
        p.record(Rule::CoverageGain.as_str(), findings);
    }

    let mutation_ready = coverage_ready.and_then(|()| p.no_errors_yet());
    if p.begin(Rule::KillsMutants.as_str(), mutation_ready) {
        let ((summaries, findings), took) =
            mutation.expect("run alongside the reruns: nothing had failed before them");
        p.stages.push(StageTime {
            stage: "mutants (alongside the reruns)".into(),
            ms: u64::try_from(took.as_millis()).unwrap_or(u64::MAX),
        });
        tested.mutation = summaries;
        p.record(Rule::KillsMutants.as_str(), findings);
    }

    if p.begin(Rule::SuiteGreen.as_str(), p.no_errors_yet()) {
        let started = Instant::now();
        let baseline = baseline
            .as_ref()
            .expect("measured: suite_green was selected and nothing had failed before");
        let invocation = Invocation {
            label: "suite",
            files: &[],
            order: Order::File,
            hash_seed: 0,
            coverage_data: None,
        };
        let run = pytest::run(sandbox, worktree, &invocation).await?;
        let written: Vec<String> = files.iter().map(|f| f.path.clone()).collect();
        p.time("whole suite", started);
        p.record(
            Rule::SuiteGreen.as_str(),
            dynamic::judge_suite(&run, baseline, &written),
        );
    }
    Ok(tested)
}

/// The mutation stage for every Python target: one summary each, and their findings.
async fn mutate(
    sandbox: &Sandbox<'_>,
    request: &ValidationRequest,
    after: &Coverage,
    before: Option<&Coverage>,
    targets: &[String],
    tests: &[String],
    first_run: Duration,
) -> Result<(Vec<MutationSummary>, Vec<Finding>), ValidateError> {
    let (mut summaries, mut findings) = (Vec::new(), Vec::new());
    for target in targets {
        let lines = |coverage: Option<&Coverage>| {
            coverage
                .and_then(|c| c.get(target))
                .map(|f| f.executed.clone())
                .unwrap_or_default()
        };
        let (covered_by_new, covered_before) = (lines(Some(after)), lines(before));
        let subject = mutation::Subject {
            worktree: &request.worktree,
            target,
            covered_by_new: &covered_by_new,
            covered_before: &covered_before,
            tests,
            first_run,
            base_commit: &request.base_commit,
            cache_dir: &request.cache_dir,
        };
        let (summary, found) =
            mutation::kills_mutants(sandbox, &sandbox.settings().mutation, &subject).await?;
        summaries.push(summary);
        findings.extend(found);
    }
    Ok((summaries, findings))
}

/// The report being built.
struct Pipeline<'a> {
    settings: &'a ValidationSettings,
    request: &'a ValidationRequest,
    findings: Vec<Finding>,
    rules: Vec<RuleRun>,
    /// The files judged, with the SHA-256 of the bytes judged.
    verified: Vec<VerifiedFile>,
    /// Wall time per stage, in order.
    stages: Vec<StageTime>,
}

impl Pipeline<'_> {
    /// Records how long `stage` took since `started`.
    fn time(&mut self, stage: &str, started: Instant) {
        self.stages.push(StageTime {
            stage: stage.to_string(),
            ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        });
    }

    /// Whether `rule` is selected for the task kind by the settings.
    fn selected(&self, rule: Rule) -> bool {
        self.settings
            .selects(self.request.kind, rule.as_str())
            .is_ok()
    }

    /// Whether `rule` runs now: selected, and `ready`. Otherwise records why not.
    fn begin(&mut self, rule: &str, ready: Result<(), String>) -> bool {
        match self.settings.selects(self.request.kind, rule).and(ready) {
            Ok(()) => true,
            Err(reason) => {
                self.skip(rule, reason);
                false
            }
        }
    }

    fn skip(&mut self, rule: &str, reason: impl Into<String>) {
        self.rules.push(RuleRun {
            rule: rule.to_string(),
            status: RuleStatus::Skipped {
                reason: reason.into(),
            },
        });
    }

    fn record(&mut self, rule: &str, findings: Vec<Finding>) {
        let passed = !findings.iter().any(Finding::is_error);
        self.rules.push(RuleRun {
            rule: rule.to_string(),
            status: RuleStatus::Ran { passed },
        });
        self.findings.extend(findings);
    }

    /// `Err` naming the rules that failed, as the reason to skip an expensive rule.
    fn no_errors_yet(&self) -> Result<(), String> {
        let failed: Vec<&str> = self
            .rules
            .iter()
            .filter(|r| r.status == RuleStatus::Ran { passed: false })
            .map(|r| r.rule.as_str())
            .collect();
        if failed.is_empty() {
            Ok(())
        } else {
            Err(format!("earlier rules found errors: {}", failed.join(", ")))
        }
    }

    fn finish(mut self, sandbox: &Sandbox<'_>, tested: Tested) -> ValidationReport {
        let confined = !sandbox.ran_unconfined();
        if !confined {
            self.findings.push(Finding::warning(
                "sandbox",
                "NOT SANDBOXED: validation.sandbox = \"none\", so the generated code ran \
                 unconfined, with access to everything the user running pitcrew can reach; \
                 these results may have been tampered with",
            ));
        }
        if sandbox.network_exposed() {
            self.findings.push(Finding::warning(
                "sandbox",
                "network isolation is unavailable on this machine: the tests ran with network \
                 access",
            ));
        }
        let ran = self
            .rules
            .iter()
            .any(|r| matches!(r.status, RuleStatus::Ran { .. }));
        if !ran {
            self.findings.push(Finding::error(
                "validation",
                format!(
                    "no rule ran for task kind `{}`, so nothing was verified",
                    self.request.kind
                ),
            ));
        }
        let errors: Vec<&Finding> = self.findings.iter().filter(|f| f.is_error()).collect();
        let outcome = if errors.is_empty() {
            Outcome::Accepted
        } else if tested.possible_bug && errors.iter().all(|f| f.rule == Rule::TestsPass.as_str()) {
            Outcome::PossibleBug
        } else {
            Outcome::Rejected
        };
        // Findings quote what generated code printed: never a secret, wherever they go next.
        self.findings.iter_mut().for_each(Finding::redact_secrets);
        let mutation_score = {
            let (killed, tried) = tested
                .mutation
                .iter()
                .fold((0, 0), |(k, t), m| (k + m.killed, t + m.tried));
            (tried > 0).then(|| killed as f64 / tried as f64)
        };
        let quality = quality(&self.rules, &self.findings, confined, mutation_score);
        ValidationReport {
            outcome,
            findings: self.findings,
            rules: self.rules,
            quality,
            coverage: tested.coverage,
            verified: self.verified,
            confined,
            evidence: Evidence {
                tests_collected: tested.tests.0,
                tests_passed: tested.tests.1,
                reruns: tested.rerun_orders,
                mutation: tested.mutation,
                stages: self.stages,
            },
            failing_tests: tested.own_failures,
        }
    }
}
