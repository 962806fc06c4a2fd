//! What validation concluded: [`ValidationReport`], its [`Outcome`] and quality score.

use pitcrew_core::{Finding, Severity};
use serde::Serialize;

/// The verdict on a task's output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Every rule that ran passed (no `error` finding).
    Accepted,
    /// At least one `error` finding, and the output is not a possible bug.
    Rejected,
    /// Well-formed tests that fail against the current code on an assertion of their own:
    /// kept for a human to judge whether the code or the test is wrong. Precisely: the only
    /// `error` findings come from `tests_pass`; every static rule that ran passed; every
    /// new test was collected; every failing new test failed with an `AssertionError` (or
    /// pytest's "DID NOT RAISE") raised at a line of a written test file, not in a fixture,
    /// at import or by a timeout; and `not_flaky` (when it ran) saw the same results again.
    PossibleBug,
}

/// Whether a rule ran.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum RuleStatus {
    /// It ran; `passed` is false when it made an `error` finding.
    Ran {
        passed: bool,
    },
    Skipped {
        reason: String,
    },
}

/// One rule's entry in the report, in the order rules were considered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RuleRun {
    /// A built-in rule id or a project command rule's id.
    pub rule: String,
    #[serde(flatten)]
    pub status: RuleStatus,
}

/// How the new tests changed the coverage of one target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CoverageGain {
    /// The target, relative to the worktree.
    pub target: String,
    /// Lines the existing suite covered at the base commit.
    pub covered_before: usize,
    /// Lines covered by the existing suite and the new tests together.
    pub covered_after: usize,
    /// Executable lines (statements) of the target.
    pub statements: usize,
    /// Lines the new tests cover that the existing suite did not, ascending.
    pub newly_covered: Vec<u32>,
    /// Lines still covered by nothing, ascending.
    pub still_uncovered: Vec<u32>,
}

/// Everything validation found out about one output.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ValidationReport {
    pub outcome: Outcome,
    pub findings: Vec<Finding>,
    /// Every rule considered: ran (passed or not) or skipped with the reason.
    pub rules: Vec<RuleRun>,
    /// See [`quality`].
    pub quality: f64,
    /// One entry per Python target, when `coverage_gain` ran.
    pub coverage: Vec<CoverageGain>,
}

impl ValidationReport {
    pub fn is_accepted(&self) -> bool {
        self.outcome == Outcome::Accepted
    }

    /// The `error` findings, which are what a refinement round must fix.
    pub fn errors(&self) -> impl Iterator<Item = &Finding> {
        self.findings.iter().filter(|f| f.is_error())
    }
}

/// The quality score, 0–1, computed only from findings of rules that ran (findings not
/// made by a rule, such as the sandbox's warning that the network could not be cut off, do
/// not count; info findings never count). With `R` the rules that ran, `P` those of them
/// without an error finding and `W` the warning findings they made:
///
/// - no error finding: `0.5 + 0.5 × 0.8^W` — in (0.5, 1], 1 when nothing was even warned;
/// - otherwise: `0.5 × P / R` — in [0, 0.5), higher the further the output got;
/// - no rule ran: 0, since nothing was shown.
///
/// So every accepted output scores above every rejected one.
pub fn quality(rules: &[RuleRun], findings: &[Finding]) -> f64 {
    let ran: Vec<&str> = rules
        .iter()
        .filter(|r| matches!(r.status, RuleStatus::Ran { .. }))
        .map(|r| r.rule.as_str())
        .collect();
    if ran.is_empty() {
        return 0.0;
    }
    let counted = findings.iter().filter(|f| ran.contains(&f.rule.as_str()));
    let warnings = counted
        .clone()
        .filter(|f| f.severity == Severity::Warning)
        .count();
    let failed = ran
        .iter()
        .filter(|&&rule| counted.clone().any(|f| f.rule == rule && f.is_error()))
        .count();
    if failed == 0 {
        0.5 + 0.5 * 0.8_f64.powi(i32::try_from(warnings).unwrap_or(i32::MAX))
    } else {
        0.5 * (ran.len() - failed) as f64 / ran.len() as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ran(rule: &str) -> RuleRun {
        RuleRun {
            rule: rule.into(),
            status: RuleStatus::Ran { passed: true },
        }
    }

    #[test]
    fn quality_follows_the_documented_formula() {
        let rules = vec![
            ran("syntax"),
            ran("assertions"),
            ran("tests_pass"),
            ran("suite_green"),
            RuleRun {
                rule: "coverage_gain".into(),
                status: RuleStatus::Skipped {
                    reason: "off".into(),
                },
            },
        ];
        assert_eq!(quality(&rules, &[]), 1.0);
        let warn = Finding::warning("assertions", "weak");
        assert!((quality(&rules, &[warn.clone(), warn.clone()]) - 0.82).abs() < 1e-9);
        // Findings of rules that did not run, and info findings, are not counted.
        let ignored = [
            Finding::error("coverage_gain", "x"),
            Finding::warning("sandbox", "no network isolation"),
            Finding::info("syntax", "ok"),
        ];
        assert_eq!(quality(&rules, &ignored), 1.0);
        let errors = [
            Finding::error("tests_pass", "fails"),
            Finding::error("tests_pass", "fails too"),
            warn,
        ];
        assert_eq!(quality(&rules, &errors), 0.5 * 3.0 / 4.0);
        assert_eq!(quality(&[], &[]), 0.0);
    }
}
