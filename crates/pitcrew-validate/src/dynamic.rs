//! The rules that run tests: `tests_pass` (judging the first run), `not_flaky` (reruns)
//! and `suite_green` (the whole suite against the baseline).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use pitcrew_core::Finding;

use crate::coverage::Baseline;
use crate::error::ValidateError;
use crate::pytest::{
    self, Invocation, Order, PytestRun, crash_site, excerpt, failed_own_assertion,
    is_collection_error, module_of, result_word, test_id,
};
use crate::report::FailingTest;
use crate::reports::{CaseResult, TestCase};
use crate::rules::Rule;
use crate::sandbox::Sandbox;

/// A test the static analysis found in a written file, which pytest must collect.
#[derive(Debug, Clone)]
pub(crate) struct Expected {
    pub file: String,
    pub class: Option<String>,
    pub name: String,
    pub line: u32,
}

impl Expected {
    fn id(&self) -> String {
        match &self.class {
            Some(class) => format!("{}::{class}::{}", self.file, self.name),
            None => format!("{}::{}", self.file, self.name),
        }
    }

    /// Whether `case` is (one parametrization of) this test.
    fn matches(&self, case: &TestCase) -> bool {
        let base = case.name.split('[').next().unwrap_or(&case.name);
        let in_file = match &case.file {
            Some(file) => *file == self.file,
            None => case.classname.starts_with(&module_of(&self.file)),
        };
        let in_class = match &self.class {
            Some(class) => case.classname.ends_with(&format!(".{class}")),
            None => true,
        };
        base == self.name && in_file && in_class
    }
}

/// How the new tests fared on their first run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    Passed,
    /// Collected, and every failure is the test's own assertion: a possible bug.
    OwnAssertionsFailed,
    /// Anything else that is not a pass.
    Broken,
}

fn at_case(finding: Finding, case: &TestCase) -> Finding {
    let site = match &case.result {
        CaseResult::Failed { details, .. } | CaseResult::Errored { details, .. } => {
            crash_site(details).filter(|(path, _, _)| case.file.as_deref() == Some(*path))
        }
        _ => None,
    };
    let finding = match &case.file {
        Some(file) => finding.in_file(file),
        None => finding,
    };
    match site.map(|(_, line, _)| line).or(case.line) {
        Some(line) => finding.at_line(line),
        None => finding,
    }
}

/// `tests_pass` on the first run of the new tests.
pub(crate) fn judge_first_run(
    run: &PytestRun,
    expected: &[Expected],
    test_files: &[String],
) -> (Vec<Finding>, Verdict) {
    const RULE: &str = Rule::TestsPass.as_str();
    let broken = |finding: Finding| (vec![finding], Verdict::Broken);
    if run.output.timed_out {
        let finding = Finding::error(RULE, run.timeout_message());
        let file = run.running_at_timeout().and_then(|t| t.split("::").next());
        return broken(match file {
            Some(file) => finding.in_file(file),
            None => finding,
        });
    }
    let Some(cases) = &run.cases else {
        return broken(Finding::error(
            RULE,
            format!(
                "`{}` wrote no test report ({}):\n{}",
                run.command,
                run.output.describe_status(),
                run.output.combined_tail(20)
            ),
        ));
    };
    let mut findings = Vec::new();
    let mut verdict = Verdict::Passed;
    let mut worsen = |v: Verdict| {
        if verdict != Verdict::Broken {
            verdict = v;
        }
    };
    let (collection_errors, tests): (Vec<&TestCase>, Vec<&TestCase>) =
        cases.iter().partition(|c| is_collection_error(c));
    for case in &collection_errors {
        let CaseResult::Errored { message, details } = &case.result else {
            continue;
        };
        let file = case.file.as_deref().unwrap_or(&case.name);
        findings.push(at_case(
            Finding::error(
                RULE,
                format!(
                    "`{file}` cannot be collected:\n{}",
                    excerpt(message, details)
                ),
            ),
            case,
        ));
        worsen(Verdict::Broken);
    }
    if tests.is_empty() && collection_errors.is_empty() {
        findings.push(Finding::error(
            RULE,
            format!(
                "pytest collected no tests from {} ({}):\n{}",
                test_files.join(", "),
                run.output.describe_status(),
                run.output.combined_tail(10)
            ),
        ));
        worsen(Verdict::Broken);
    }
    for missing in expected
        .iter()
        .filter(|e| !tests.iter().any(|c| e.matches(c)))
    {
        if collection_errors
            .iter()
            .any(|c| c.file.as_deref() == Some(&missing.file))
        {
            continue; // already reported: its whole file could not be collected
        }
        findings.push(
            Finding::error(
                RULE,
                format!(
                    "`{}` (line {}) was not collected by pytest",
                    missing.id(),
                    missing.line
                ),
            )
            .in_file(&missing.file)
            .at_line(missing.line),
        );
        worsen(Verdict::Broken);
    }
    // The report's cases, cross-checked against the source: a case of a new test file that
    // is no test function written there was made up at run time, or the report was forged.
    for case in &tests {
        let base = case.name.split('[').next().unwrap_or(&case.name);
        let in_new_file = case.file.as_ref().is_some_and(|f| test_files.contains(f));
        if in_new_file && !expected.iter().any(|e| e.name == base) {
            findings.push(at_case(
                Finding::error(
                    RULE,
                    format!(
                        "the test report lists `{}`, which is not a test function of the file \
                         as written; write every test as a plain `test_*` function or method",
                        test_id(case)
                    ),
                ),
                case,
            ));
            worsen(Verdict::Broken);
        }
    }
    for case in &tests {
        let id = test_id(case);
        let message = match &case.result {
            CaseResult::Passed => continue,
            CaseResult::Skipped { xfail: true, .. } => format!(
                "`{id}` is marked xfail: an expected failure proves nothing; make it a test \
                 that passes"
            ),
            CaseResult::Skipped { message, .. } => format!(
                "`{id}` was skipped ({message}): a skipped test proves nothing; remove the skip"
            ),
            CaseResult::Failed { message, .. } if message.starts_with("[XPASS(strict)]") => {
                format!(
                    "`{id}` was marked xfail while it ran, and passed: an expected failure \
                     proves nothing; make it a plain test that passes"
                )
            }
            CaseResult::Failed { message, details } if failed_own_assertion(case, test_files) => {
                findings.push(at_case(
                    Finding::error(
                        RULE,
                        format!(
                            "`{id}` fails against the current code: either the code has a bug, \
                             or the expectation is wrong. The values the code really gives are \
                             below; if the code is right, expect those:\n{}",
                            excerpt(message, details)
                        ),
                    ),
                    case,
                ));
                worsen(Verdict::OwnAssertionsFailed);
                continue;
            }
            CaseResult::Failed { message, details } => {
                let kind = crash_site(details).map_or("an exception", |(_, _, kind)| kind);
                format!(
                    "`{id}` fails with {kind} before its assertions could judge the code:\n{}",
                    excerpt(message, details)
                )
            }
            CaseResult::Errored { message, details } => {
                format!(
                    "`{id}` errors outside the test body (a fixture, setup or teardown):\n{}",
                    excerpt(message, details)
                )
            }
        };
        findings.push(at_case(Finding::error(RULE, message), case));
        worsen(Verdict::Broken);
    }
    if findings.is_empty() && !run.output.success() {
        findings.push(Finding::error(
            RULE,
            format!(
                "`{}` ended with {} although every collected test passed:\n{}",
                run.command,
                run.output.describe_status(),
                run.output.combined_tail(20)
            ),
        ));
        worsen(Verdict::Broken);
    }
    (findings, verdict)
}

/// The new tests that failed on an assertion of their own: each may be a bug in the code or
/// a wrong expectation.
pub(crate) fn own_failures(run: &PytestRun, test_files: &[String]) -> Vec<FailingTest> {
    run.cases
        .iter()
        .flatten()
        .filter(|c| failed_own_assertion(c, test_files))
        .map(|case| {
            let (message, details) = match &case.result {
                CaseResult::Failed { message, details } => (message.as_str(), details.as_str()),
                _ => ("", ""),
            };
            let located = at_case(Finding::info(Rule::TestsPass.as_str(), ""), case);
            FailingTest {
                test: test_id(case),
                file: case.file.clone().unwrap_or_default(),
                line: located.line,
                failure: pitcrew_core::bounded(excerpt(message, details)),
            }
        })
        .collect()
}

/// Cases of the new test files in the first run (collection errors aside), and how many
/// passed.
pub(crate) fn new_test_counts(run: &PytestRun, test_files: &[String]) -> (usize, usize) {
    let cases: Vec<&TestCase> = run
        .cases
        .iter()
        .flatten()
        .filter(|c| !is_collection_error(c))
        .filter(|c| c.file.as_ref().is_some_and(|f| test_files.contains(f)))
        .collect();
    let passed = cases
        .iter()
        .filter(|c| c.result == CaseResult::Passed)
        .count();
    (cases.len(), passed)
}

/// The order of rerun `k` (1-based): reverse first, then shuffled with seed `k`.
fn rerun_order(k: u32) -> Order {
    if k == 1 {
        Order::Reverse
    } else {
        Order::Shuffle(k)
    }
}

/// The reruns [`reruns`] makes, in words.
pub(crate) fn rerun_orders(reruns: u32) -> Vec<String> {
    (1..=reruns)
        .map(|k| format!("{} (PYTHONHASHSEED={k})", rerun_order(k)))
        .collect()
}

/// `not_flaky`: runs the new tests `reruns` more times, first in reverse order, then
/// shuffled, each with its own `PYTHONHASHSEED`, and reports every test whose result
/// differs from the first run (file order, `PYTHONHASHSEED=0`). Stops at the first rerun
/// that differs.
pub(crate) async fn reruns(
    sandbox: &Sandbox<'_>,
    worktree: &Path,
    first: &[TestCase],
    test_files: &[String],
    reruns: u32,
) -> Result<Vec<Finding>, ValidateError> {
    const RULE: &str = Rule::NotFlaky.as_str();
    let results = |cases: &[TestCase]| -> BTreeMap<String, TestCase> {
        cases
            .iter()
            .filter(|c| !is_collection_error(c))
            .map(|c| (test_id(c), c.clone()))
            .collect()
    };
    let before = results(first);
    for k in 1..=reruns {
        let order = rerun_order(k);
        let label = format!("rerun-{k}");
        let invocation = Invocation {
            label: &label,
            files: test_files,
            order,
            hash_seed: k,
            coverage_data: None,
        };
        let run = pytest::run(sandbox, worktree, &invocation).await?;
        let which = format!("rerun {k} ({order}, PYTHONHASHSEED={k})");
        if run.output.timed_out {
            return Ok(vec![Finding::error(
                RULE,
                format!("{which}: {}", run.timeout_message()),
            )]);
        }
        let Some(cases) = &run.cases else {
            return Ok(vec![Finding::error(
                RULE,
                format!(
                    "{which} wrote no test report ({}):\n{}",
                    run.output.describe_status(),
                    run.output.combined_tail(20)
                ),
            )]);
        };
        let after = results(cases);
        let ids: BTreeSet<&String> = before.keys().chain(after.keys()).collect();
        let word =
            |case: Option<&TestCase>| case.map_or("was not collected", |c| result_word(&c.result));
        let mut findings = Vec::new();
        for id in ids {
            let (a, b) = (before.get(id), after.get(id));
            if word(a) == word(b) {
                continue;
            }
            let detail = match b.map(|c| &c.result) {
                Some(
                    CaseResult::Failed { message, details }
                    | CaseResult::Errored { message, details },
                ) => {
                    format!(":\n{}", excerpt(message, details))
                }
                _ => String::new(),
            };
            let mut finding = Finding::error(
                RULE,
                format!(
                    "`{id}` {} on the first run (file order, PYTHONHASHSEED=0) but {} on \
                     {which}: it depends on test order, leftover state or hash order{detail}",
                    word(a),
                    word(b)
                ),
            );
            if let Some(case) = b.or(a) {
                finding = at_case(finding, case);
            }
            findings.push(finding);
        }
        if !findings.is_empty() {
            return Ok(findings);
        }
    }
    Ok(Vec::new())
}

/// Whether a test that took `before_ms` at the base commit and `now_ms` with the change
/// became much slower: by a factor and by a margin both well past run-to-run noise.
fn is_slowdown(before_ms: u64, now_ms: u64) -> bool {
    const FACTOR: u64 = 5;
    const MARGIN_MS: u64 = 1000;
    now_ms >= before_ms.saturating_mul(FACTOR) && now_ms >= before_ms.saturating_add(MARGIN_MS)
}

/// `suite_green`: every test that fails in the whole suite now but did not at the base
/// commit is an error; tests that already failed there are listed, not judged.
pub(crate) fn judge_suite(
    run: &PytestRun,
    baseline: &Baseline,
    new_files: &[String],
) -> Vec<Finding> {
    const RULE: &str = Rule::SuiteGreen.as_str();
    if run.output.timed_out {
        return vec![Finding::error(
            RULE,
            format!("the whole suite {}", run.timeout_message()),
        )];
    }
    let Some(cases) = &run.cases else {
        return vec![Finding::error(
            RULE,
            format!(
                "`{}` wrote no test report ({}):\n{}",
                run.command,
                run.output.describe_status(),
                run.output.combined_tail(20)
            ),
        )];
    };
    let mut findings = Vec::new();
    if cases.is_empty() && baseline.tests > 0 {
        findings.push(Finding::error(
            RULE,
            format!(
                "the whole suite collected no tests, though it had {} at the base commit:\n{}",
                baseline.tests,
                run.output.combined_tail(10)
            ),
        ));
    }
    let mut already = Vec::new();
    for case in cases {
        let (CaseResult::Failed { message, details } | CaseResult::Errored { message, details }) =
            &case.result
        else {
            continue;
        };
        let id = test_id(case);
        if baseline.failing.contains(&id) {
            already.push(id);
            continue;
        }
        let is_new = case.file.as_ref().is_some_and(|f| new_files.contains(f));
        let what = if is_new {
            "passes on its own but fails in the whole suite (it depends on, or is broken by, \
             other tests)"
        } else {
            "passed at the base commit but fails with the new files in place"
        };
        findings.push(at_case(
            Finding::error(
                RULE,
                format!("`{id}` {what}:\n{}", excerpt(message, details)),
            ),
            case,
        ));
    }
    for case in cases {
        let id = test_id(case);
        let (Some(now), Some(&before)) = (case.duration_ms, baseline.durations_ms.get(&id)) else {
            continue;
        };
        if case.result == CaseResult::Passed && is_slowdown(before, now) {
            findings.push(at_case(
                Finding::warning(
                    RULE,
                    format!(
                        "`{id}` took {:.1} s with the new files in place, {:.1} s at the base \
                         commit",
                        now as f64 / 1000.0,
                        before as f64 / 1000.0
                    ),
                ),
                case,
            ));
        }
    }
    if !already.is_empty() {
        findings.push(Finding::info(
            RULE,
            format!(
                "{} tests already failed at the base commit and were not judged: {}",
                already.len(),
                already.join(", ")
            ),
        ));
    }
    findings
}
