//! What validation concluded: [`ValidationReport`], its [`Outcome`] and quality score.

use pitcrew_core::{Finding, Severity, VerifiedFile};
use serde::{Deserialize, Serialize};

use crate::checks::line_ranges;
use crate::mutation::MutationSummary;
use crate::rules::Rule;

/// The verdict on a task's output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleRun {
    /// A built-in rule id or a project command rule's id.
    pub rule: String,
    #[serde(flatten)]
    pub status: RuleStatus,
}

/// How the new tests changed the coverage of one target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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

/// A new test that failed on an assertion of its own: a bug in the code, or a wrong
/// expectation, for a human to judge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailingTest {
    /// pytest's node id, e.g. `tests/test_calc.py::test_div[2]`.
    pub test: String,
    pub file: String,
    pub line: Option<u32>,
    /// The failing assertion with the values the code gave.
    pub failure: String,
}

/// How long one stage of a validation took.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StageTime {
    pub stage: String,
    pub ms: u64,
}

/// What the checks that ran showed, beyond pass or fail: the evidence card's figures.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Evidence {
    /// Test cases of the new files the first run reported (parametrizations count apart).
    pub tests_collected: usize,
    /// Of those, how many passed.
    pub tests_passed: usize,
    /// The reruns the new tests passed again in, in words.
    pub reruns: Vec<String>,
    /// The mutation stage, one entry per target, when it ran.
    pub mutation: Vec<MutationSummary>,
    /// Wall time per stage, in order.
    pub stages: Vec<StageTime>,
}

/// Everything validation found out about one output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ValidationReport {
    pub outcome: Outcome,
    pub findings: Vec<Finding>,
    /// Every rule considered: ran (passed or not) or skipped with the reason.
    pub rules: Vec<RuleRun>,
    /// See [`quality`].
    pub quality: f64,
    /// One entry per Python target, when `coverage_gain` ran.
    pub coverage: Vec<CoverageGain>,
    /// The files judged, with the SHA-256 of the exact bytes judged: what may be committed.
    pub verified: Vec<VerifiedFile>,
    /// Whether every command that ran generated code ran confined (false only with
    /// `validation.sandbox = "none"`).
    pub confined: bool,
    #[serde(default)]
    pub evidence: Evidence,
    /// The new tests that failed on their own assertions (see [`Outcome::PossibleBug`]).
    #[serde(default)]
    pub failing_tests: Vec<FailingTest>,
}

impl ValidationReport {
    pub fn is_accepted(&self) -> bool {
        self.outcome == Outcome::Accepted
    }

    /// The `error` findings, which are what a refinement round must fix.
    pub fn errors(&self) -> impl Iterator<Item = &Finding> {
        self.findings.iter().filter(|f| f.is_error())
    }

    /// The evidence card: what the checks that ran showed, a line per kind of evidence,
    /// for people (`show`, `validate`, commit messages).
    pub fn card(&self) -> Vec<String> {
        let ev = &self.evidence;
        let mut lines = Vec::new();
        if ev.tests_collected > 0 {
            let mut line = format!(
                "tests: {} collected, {} passed",
                ev.tests_collected, ev.tests_passed
            );
            if !ev.reruns.is_empty() {
                line.push_str(&format!("; passed again in {}", ev.reruns.join(", ")));
            }
            lines.push(line);
        }
        for gain in &self.coverage {
            let gained = gain.covered_after.saturating_sub(gain.covered_before);
            let which = if gain.newly_covered.is_empty() {
                String::new()
            } else {
                format!(": lines {}", line_ranges(&gain.newly_covered))
            };
            lines.push(format!(
                "coverage of {}: {} → {} of {} lines (+{gained}{which})",
                gain.target, gain.covered_before, gain.covered_after, gain.statements
            ));
        }
        for m in &ev.mutation {
            let mut line = format!(
                "mutants of {}: {} killed of {} tried, {} of them missed by the existing tests",
                m.target, m.killed, m.tried, m.killed_only_by_new
            );
            if let Some(s) = m.survived.first() {
                line.push_str(&format!(
                    "; {} survived, e.g. line {}: `{}` → `{}`",
                    m.survived.len(),
                    s.line,
                    s.original,
                    s.replacement
                ));
            }
            if m.not_run > 0 {
                line.push_str(&format!("; {} not run (time budget)", m.not_run));
            }
            lines.push(line);
        }
        if !ev.stages.is_empty() {
            let stages: Vec<String> = ev
                .stages
                .iter()
                .map(|s| format!("{} {:.1}s", s.stage, s.ms as f64 / 1000.0))
                .collect();
            lines.push(format!("time: {}", stages.join(", ")));
        }
        let sandbox = if self.confined {
            "sandboxed"
        } else {
            "NOT SANDBOXED"
        };
        lines.push(format!("quality {:.2}, {sandbox}", self.quality));
        lines
    }
}

/// How much each built-in rule that passed adds to the quality score, in hundredths: how
/// strong the evidence it gives is that the output is right. They sum to 100: only a test
/// that passed, passed again, raised coverage, killed every mutant and left the suite green
/// reaches the top.
pub const fn evidence_weight(rule: Rule) -> u32 {
    match rule {
        Rule::ChangeSet => 4,
        Rule::FileExists => 2,
        Rule::NotEmpty => 2,
        Rule::Syntax => 4,
        Rule::Toolchain => 4,
        Rule::TestNaming => 2,
        Rule::Assertions => 5,
        Rule::TestIntegrity => 4,
        Rule::ImportsTarget => 3,
        Rule::NoPlaceholders => 4,
        Rule::TestsPass => 18,
        Rule::NotFlaky => 8,
        Rule::CoverageGain => 14,
        Rule::KillsMutants => 14,
        Rule::SuiteGreen => 8,
        Rule::WorktreeUnchanged => 4,
    }
}

/// What a project's own command rule (`[[validation.commands]]`) that passed adds, in
/// hundredths.
pub const COMMAND_RULE_WEIGHT: u32 = 5;

/// The quality score, 0–1: the evidence the rules that ran and passed give, with nothing for
/// a rule that did not run. Defined in docs/quality.md, with examples:
///
/// `quality = min(1, E) × 0.9^W × (errors ? 0.5 : 1) × (confined ? 1 : 0.5)`
///
/// where `E` sums [`evidence_weight`] (in hundredths) of every built-in rule that ran without
/// an error finding — `kills_mutants` in proportion to the mutants killed (`mutation_score`,
/// killed over tried) — and [`COMMAND_RULE_WEIGHT`] for every project command rule that did,
/// and `W` counts the warning findings of rules that ran (info findings, and findings not
/// made by a rule, do not count). No rule ran: 0. There is no floor: a docs task checked for
/// existence and syntax scores far below a unit test that passed reruns, raised coverage and
/// killed mutants.
pub fn quality(
    rules: &[RuleRun],
    findings: &[Finding],
    confined: bool,
    mutation_score: Option<f64>,
) -> f64 {
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
    let failed = |rule: &str| counted.clone().any(|f| f.rule == rule && f.is_error());
    let evidence: f64 = ran
        .iter()
        .filter(|rule| !failed(rule))
        .map(|rule| match rule.parse::<Rule>() {
            Ok(Rule::KillsMutants) => {
                f64::from(evidence_weight(Rule::KillsMutants)) * mutation_score.unwrap_or(0.0)
            }
            Ok(rule) => f64::from(evidence_weight(rule)),
            Err(_) => f64::from(COMMAND_RULE_WEIGHT),
        })
        .sum();
    let any_error = ran.iter().any(|rule| failed(rule));
    // Hundredths, rounded, so that equal evidence gives equal scores.
    let mut score = (evidence.min(100.0).round() / 100.0)
        * 0.9_f64.powi(i32::try_from(warnings).unwrap_or(i32::MAX));
    if any_error {
        score *= 0.5;
    }
    if !confined {
        score *= 0.5;
    }
    score
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
    fn evidence_weights_sum_to_one() {
        let total: u32 = Rule::ALL.iter().map(|&r| evidence_weight(r)).sum();
        assert_eq!(total, 100);
    }

    #[test]
    fn quality_follows_the_documented_formula() {
        let every: Vec<RuleRun> = Rule::ALL.iter().map(|r| ran(r.as_str())).collect();
        assert_eq!(quality(&every, &[], true, Some(1.0)), 1.0);
        // The same evidence, unconfined, counts half.
        assert_eq!(quality(&every, &[], false, Some(1.0)), 0.5);

        // A docs task checked for existence, content, syntax, placeholders and its change
        // set is weak evidence.
        let docs: Vec<RuleRun> = [
            "change_set",
            "file_exists",
            "not_empty",
            "syntax",
            "no_placeholders",
            "worktree_unchanged",
        ]
        .into_iter()
        .map(ran)
        .collect();
        assert!((quality(&docs, &[], true, None) - 0.20).abs() < 1e-9);

        // Every rule but change_set ran, and a project command rule.
        let mut rules: Vec<RuleRun> = Rule::ALL[1..].iter().map(|r| ran(r.as_str())).collect();
        rules.push(ran("ruff"));
        rules.push(RuleRun {
            rule: "change_set".into(),
            status: RuleStatus::Skipped {
                reason: "off".into(),
            },
        });
        let warn = Finding::warning("assertions", "weak");
        // Findings of rules that did not run, and info findings, are not counted.
        let ignored = [
            Finding::error("change_set", "x"),
            Finding::warning("sandbox", "no network isolation"),
            Finding::info("syntax", "ok"),
        ];
        // 100 - 4 (change_set) + 5 (ruff), capped.
        assert_eq!(quality(&rules, &ignored, true, Some(1.0)), 1.0);
        let two_warnings = quality(&rules, &[warn.clone(), warn.clone()], true, Some(1.0));
        assert!((two_warnings - 0.81).abs() < 1e-9, "{two_warnings}");

        let errors = [
            Finding::error("tests_pass", "fails"),
            Finding::error("tests_pass", "fails too"),
        ];
        // 101 - 18 (tests_pass) = 83, halved for the error.
        assert!((quality(&rules, &errors, true, Some(1.0)) - 0.415).abs() < 1e-9);
        assert_eq!(quality(&[], &[], true, None), 0.0);
        // Mutation evidence counts in proportion to the mutants killed.
        let half = quality(&every, &[], true, Some(0.5));
        assert!((half - 0.93).abs() < 1e-9, "{half}");
    }
}
