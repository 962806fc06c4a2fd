//! The whole pipeline on a small real Python package (tests/fixtures/pyproj), with real
//! pytest and coverage.py: each test commits the fixture into a fresh git repository, writes
//! one candidate test file, validates it and checks the verdict and the rule that gave it.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use pitcrew_core::{Finding, TaskKind};
use pitcrew_testkit::TempRepo;
use pitcrew_validate::{
    Outcome, RuleStatus, ValidationReport, ValidationRequest, ValidationSettings, validate,
};

const TARGET: &str = "src/pricing.py";

/// The fixture committed into a fresh repository.
struct Project {
    repo: TempRepo,
    base: String,
    cache: PathBuf,
    /// Set when the project has a baseline cache of its own.
    _own_cache: Option<tempfile::TempDir>,
}

fn fixture_files(dir: &Path, prefix: &str, out: &mut Vec<(String, String)>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let rel = if prefix.is_empty() {
            name.clone()
        } else {
            format!("{prefix}/{name}")
        };
        if path.is_dir() {
            if name != "__pycache__" {
                fixture_files(&path, &rel, out);
            }
        } else {
            out.push((rel, std::fs::read_to_string(&path).unwrap()));
        }
    }
}

impl Project {
    /// The fixture, committed with fixed dates so that every project has the same base
    /// commit and shares one baseline cache: the existing suite is measured once per test
    /// run, not once per test.
    fn new() -> Project {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/pyproj");
        let mut files = Vec::new();
        fixture_files(&root, "", &mut files);
        let repo = TempRepo::new();
        for (path, content) in &files {
            repo.write(path, content);
        }
        repo.git(&["add", "-A"]);
        let committed = Command::new("git")
            .args(["commit", "--quiet", "--no-verify", "-m", "fixture"])
            .current_dir(repo.path())
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_AUTHOR_DATE", "2026-01-01T00:00:00Z")
            .env("GIT_COMMITTER_DATE", "2026-01-01T00:00:00Z")
            .env_remove("GIT_DIR")
            .env_remove("GIT_WORK_TREE")
            .env_remove("GIT_INDEX_FILE")
            .status()
            .unwrap();
        assert!(committed.success());
        let base = repo.git(&["rev-parse", "HEAD"]);
        Project {
            repo,
            base,
            cache: Path::new(env!("CARGO_TARGET_TMPDIR")).join("pitcrew-validate-baselines"),
            _own_cache: None,
        }
    }

    /// A project whose baseline is measured afresh, in a cache of its own.
    fn with_own_cache() -> Project {
        let cache = tempfile::tempdir().unwrap();
        Project {
            cache: cache.path().to_path_buf(),
            _own_cache: Some(cache),
            ..Project::new()
        }
    }

    fn path(&self) -> &Path {
        self.repo.path()
    }

    fn request(&self, files: &[&str]) -> ValidationRequest {
        ValidationRequest {
            worktree: self.path().to_path_buf(),
            repo: self.path().to_path_buf(),
            kind: TaskKind::UnitTest,
            targets: vec![TARGET.into()],
            files: files.iter().map(|f| f.to_string()).collect(),
            base_commit: self.base.clone(),
            cache_dir: self.cache.clone(),
            parent_env: None,
        }
    }

    /// Writes `source` as `path` and validates it with `settings`.
    async fn check_with(
        &self,
        path: &str,
        source: &str,
        settings: &ValidationSettings,
    ) -> ValidationReport {
        self.repo.write(path, source);
        validate(settings, &self.request(&[path])).await.unwrap()
    }

    async fn check(&self, path: &str, source: &str) -> ValidationReport {
        self.check_with(path, source, &settings()).await
    }
}

/// The defaults, with one rerun (in reverse order) to keep the suite fast; the flaky tests
/// use more.
fn settings() -> ValidationSettings {
    ValidationSettings {
        reruns: 1,
        timeout_secs: 60,
        ..ValidationSettings::default()
    }
}

fn status<'r>(report: &'r ValidationReport, rule: &str) -> &'r RuleStatus {
    &report
        .rules
        .iter()
        .find(|r| r.rule == rule)
        .unwrap_or_else(|| panic!("no entry for {rule}: {report:#?}"))
        .status
}

fn errors<'r>(report: &'r ValidationReport, rule: &str) -> Vec<&'r Finding> {
    report.errors().filter(|f| f.rule == rule).collect()
}

/// Asserts the report is a rejection whose first failing rule is `rule`, and returns that
/// rule's error findings.
fn rejected_by<'r>(report: &'r ValidationReport, rule: &str) -> Vec<&'r Finding> {
    assert_eq!(report.outcome, Outcome::Rejected, "{report:#?}");
    let first_failed = report
        .rules
        .iter()
        .find(|r| r.status == RuleStatus::Ran { passed: false })
        .map(|r| r.rule.as_str());
    assert_eq!(first_failed, Some(rule), "{report:#?}");
    assert!(report.quality < 0.5, "{}", report.quality);
    errors(report, rule)
}

fn line_of(needle: &str) -> u32 {
    let source = include_str!("fixtures/pyproj/src/pricing.py");
    let index = source
        .lines()
        .position(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("`{needle}` not in the fixture"));
    u32::try_from(index + 1).unwrap()
}

const GOOD_TESTS: &str = r#"import pytest

from pricing import discount, shipping


def test_negative_totals_are_refused():
    with pytest.raises(ValueError):
        discount(-1)


@pytest.mark.parametrize("code, expected", [("HALF", 50), ("TENOFF", 90)])
def test_codes(code, expected):
    assert discount(100, code) == expected


def test_ten_off_never_goes_below_zero():
    assert discount(4, "TENOFF") == 0


def test_unknown_codes_are_refused():
    with pytest.raises(KeyError):
        discount(10, "NOPE")


class TestShipping:
    def test_foreign_rate(self):
        assert shipping(10, "BE") == 15
"#;

#[tokio::test]
async fn a_correct_test_file_is_accepted_with_the_newly_covered_lines() {
    let project = Project::with_own_cache();
    let report = project.check("tests/test_pricing.py", GOOD_TESTS).await;
    assert_eq!(report.outcome, Outcome::Accepted, "{report:#?}");
    for rule in report.rules.iter().filter(|r| r.rule != "toolchain") {
        assert_eq!(rule.status, RuleStatus::Ran { passed: true }, "{rule:?}");
    }
    // Every rule passed; the mutants the tests let through cost a little of the score.
    let mutation = &report.evidence.mutation[0];
    assert!(mutation.tried >= 10, "{mutation:?}");
    assert!(mutation.killed_only_by_new >= 1, "{mutation:?}");
    let score = mutation.killed as f64 / mutation.tried as f64;
    assert!(score > 0.5, "{mutation:?}");
    let expected_quality = ((86.0 + 14.0 * score).round()) / 100.0;
    assert!(
        (report.quality - expected_quality).abs() < 1e-9,
        "{}",
        report.quality
    );
    let gain = &report.coverage[0];
    assert_eq!(gain.target, TARGET);
    let mut expected = [
        line_of("raise ValueError"),
        line_of("if code == \"HALF\""),
        line_of("return total / 2"),
        line_of("if code == \"TENOFF\""),
        line_of("return max("),
        line_of("raise KeyError"),
        line_of("return FOREIGN_RATE"),
    ];
    expected.sort();
    assert_eq!(gain.newly_covered, expected);
    assert_eq!(gain.still_uncovered, Vec::<u32>::new());
    assert_eq!(gain.covered_after, gain.statements);
    let info = report
        .findings
        .iter()
        .find(|f| f.rule == "coverage_gain")
        .unwrap();
    assert!(
        info.message.contains("cover 7 lines of `src/pricing.py`"),
        "{info}"
    );
    // Validation leaves no bytecode or pytest cache in the worktree (it becomes a patch).
    let status = project.repo.git(&["status", "--porcelain", "--ignored"]);
    assert_eq!(status, "?? tests/test_pricing.py");
    // The baseline is cached by base commit.
    let cached = project
        .cache
        .join("baselines")
        .join(format!("{}.json", project.base));
    assert!(cached.is_file());
}

#[tokio::test]
async fn the_cached_baseline_is_reused() {
    let project = Project::with_own_cache();
    let report = project.check("tests/test_pricing.py", GOOD_TESTS).await;
    assert_eq!(report.outcome, Outcome::Accepted, "{report:#?}");
    // Doctor the cache to claim the base already covered everything: the next validation
    // must believe it, so it can only be reading the cache.
    let cached = project
        .cache
        .join(format!("baselines/{}.json", project.base));
    let mut baseline: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&cached).unwrap()).unwrap();
    let all: Vec<u32> = (1..=30).collect();
    baseline["coverage"][TARGET]["executed"] = serde_json::json!(all);
    baseline["coverage"][TARGET]["missing"] = serde_json::json!([]);
    std::fs::write(&cached, baseline.to_string()).unwrap();
    let again = validate(&settings(), &project.request(&["tests/test_pricing.py"]))
        .await
        .unwrap();
    assert_eq!(again.coverage[0].newly_covered, Vec::<u32>::new());
    assert!(
        again
            .findings
            .iter()
            .any(|f| f.message.contains("already cover every line")),
        "{again:#?}"
    );
}

#[tokio::test]
async fn a_syntax_error_is_rejected_before_anything_runs() {
    let project = Project::new();
    let report = project
        .check(
            "tests/test_pricing.py",
            "from pricing import discount\n\ndef test_half(:\n    assert discount(10, 'HALF') == 5\n",
        )
        .await;
    let found = rejected_by(&report, "syntax");
    assert_eq!(found[0].line, Some(3));
    assert!(found[0].message.contains("def test_half(:"), "{}", found[0]);
    for rule in ["toolchain", "test_naming", "assertions"] {
        assert!(
            matches!(status(&report, rule), RuleStatus::Skipped { reason } if reason.contains("syntax gate")),
            "{rule}: {report:#?}"
        );
    }
    assert_eq!(
        status(&report, "tests_pass"),
        &RuleStatus::Skipped {
            reason: "earlier rules found errors: syntax".into()
        }
    );
}

#[tokio::test]
async fn a_test_without_assertions_is_rejected() {
    let project = Project::new();
    let report = project
        .check(
            "tests/test_pricing.py",
            "from pricing import discount\n\ndef test_half():\n    discount(10, 'HALF')\n",
        )
        .await;
    let found = rejected_by(&report, "assertions");
    assert!(
        found[0]
            .message
            .contains("`test_half` (line 3) asserts nothing"),
        "{}",
        found[0]
    );
}

#[tokio::test]
async fn a_test_asserting_only_true_is_rejected() {
    let project = Project::new();
    let report = project
        .check(
            "tests/test_pricing.py",
            "import unittest\nfrom pricing import discount\n\n\
             def test_half():\n    discount(10, 'HALF')\n    assert True\n\n\
             class TestCodes(unittest.TestCase):\n    def test_ten_off(self):\n        discount(20, 'TENOFF')\n        self.assertTrue(True)\n",
        )
        .await;
    let found = rejected_by(&report, "assertions");
    assert_eq!(found.len(), 2);
    assert!(
        found[0].message.contains("`assert True` (line 6)"),
        "{}",
        found[0]
    );
    assert!(
        found[1]
            .message
            .contains("`self.assertTrue(True)` (line 11)"),
        "{}",
        found[1]
    );
}

#[tokio::test]
async fn a_well_formed_test_failing_on_its_assertion_is_a_possible_bug() {
    let project = Project::new();
    let report = project
        .check(
            "tests/test_pricing.py",
            "from pricing import discount\n\n\ndef test_ten_off():\n    assert discount(15, 'TENOFF') == 6\n",
        )
        .await;
    assert_eq!(report.outcome, Outcome::PossibleBug, "{report:#?}");
    let found = errors(&report, "tests_pass");
    assert_eq!(found.len(), 1);
    let finding = found[0];
    assert_eq!(finding.file.as_deref(), Some("tests/test_pricing.py"));
    assert_eq!(finding.line, Some(5));
    assert!(
        finding
            .message
            .contains("`tests/test_pricing.py::test_ten_off` fails against the current code")
    );
    assert!(finding.message.contains("assert 5 == 6"), "{finding}");
    // The failure reproduced on the reruns; coverage is not judged for a failing test.
    assert_eq!(
        status(&report, "not_flaky"),
        &RuleStatus::Ran { passed: true }
    );
    assert!(matches!(
        status(&report, "coverage_gain"),
        RuleStatus::Skipped { .. }
    ));
}

#[tokio::test]
async fn a_test_failing_on_an_import_error_is_rejected() {
    let project = Project::new();
    let report = project
        .check(
            "tests/test_pricing.py",
            "import pricing_helpers\nfrom pricing import discount\n\n\ndef test_half():\n    assert discount(10, 'HALF') == pricing_helpers.FIVE\n",
        )
        .await;
    let found = rejected_by(&report, "tests_pass");
    assert!(
        found[0]
            .message
            .contains("`tests/test_pricing.py` cannot be collected"),
        "{}",
        found[0]
    );
    assert!(
        found[0]
            .message
            .contains("No module named 'pricing_helpers'"),
        "{}",
        found[0]
    );
}

#[tokio::test]
async fn a_test_failing_outside_its_assertions_is_rejected() {
    let project = Project::new();
    let report = project
        .check(
            "tests/test_pricing.py",
            "from pricing import discount\n\n\ndef test_unknown():\n    assert discount(10, 'NOPE') == 10\n",
        )
        .await;
    let found = rejected_by(&report, "tests_pass");
    assert!(
        found[0]
            .message
            .contains("fails with KeyError before its assertions"),
        "{}",
        found[0]
    );
}

#[tokio::test]
async fn skipped_and_xfail_tests_prove_nothing() {
    let project = Project::new();
    // Written plainly, they are refused before anything runs.
    let report = project
        .check(
            "tests/test_pricing.py",
            "import pytest\nfrom pricing import discount\n\n\
             @pytest.mark.skip(reason='later')\ndef test_half():\n    assert discount(10, 'HALF') == 5\n\n\
             @pytest.mark.xfail\ndef test_ten_off():\n    assert discount(15, 'TENOFF') == 6\n",
        )
        .await;
    let found = rejected_by(&report, "test_integrity");
    assert_eq!(found.len(), 2, "{found:#?}");
    assert!(found[0].message.contains("(skip)"), "{}", found[0]);
    assert!(found[1].message.contains("(xfail)"), "{}", found[1]);
    assert_eq!(
        status(&report, "tests_pass"),
        &RuleStatus::Skipped {
            reason: "earlier rules found errors: test_integrity".into()
        }
    );

    // Hidden from the static check, the runs catch them: a skip is a skip, and an `xfail`
    // that passes is a failure under xfail_strict instead of a pass.
    let report = project
        .check(
            "tests/test_pricing.py",
            "import pytest\nfrom pricing import discount\n\n\
             def test_half():\n    getattr(pytest, 'sk' + 'ip')('later')\n    assert discount(10, 'HALF') == 5\n\n\
             def test_ten_off(request):\n    request.applymarker(getattr(pytest.mark, 'xf' + 'ail')())\n    \
             assert discount(15, 'TENOFF') == 5\n",
        )
        .await;
    let found = rejected_by(&report, "tests_pass");
    assert_eq!(found.len(), 2, "{found:#?}");
    assert!(
        found[0].message.contains("was skipped (later)"),
        "{}",
        found[0]
    );
    assert!(
        found[1]
            .message
            .contains("marked xfail while it ran, and passed"),
        "{}",
        found[1]
    );
}

#[tokio::test]
async fn a_test_that_passes_only_on_its_first_run_is_flaky() {
    let project = Project::new();
    let settings = ValidationSettings {
        reruns: 3,
        ..settings()
    };
    let report = project
        .check_with(
            "tests/test_pricing.py",
            "import os\nfrom pricing import discount\n\n\n\
             def test_half_once():\n    assert not os.path.exists('ran-once.marker')\n    open('ran-once.marker', 'w').close()\n    assert discount(10, 'HALF') == 5\n",
            &settings,
        )
        .await;
    let found = rejected_by(&report, "not_flaky");
    let message = &found[0].message;
    assert!(
        message.contains("`tests/test_pricing.py::test_half_once` passed on the first run"),
        "{message}"
    );
    assert!(
        message.contains("but failed on rerun 1 (reverse order, PYTHONHASHSEED=1)"),
        "{message}"
    );
}

#[tokio::test]
async fn a_test_that_depends_on_order_is_flaky() {
    let project = Project::new();
    let report = project
        .check(
            "tests/test_pricing.py",
            "from pricing import discount\n\nstate = {}\n\n\n\
             def test_a_computes():\n    state['half'] = discount(20, 'HALF')\n    assert state['half'] == 10\n\n\n\
             def test_b_reuses():\n    assert state['half'] + discount(0) == 10\n",
        )
        .await;
    let found = rejected_by(&report, "not_flaky");
    assert_eq!(found.len(), 1, "{found:#?}");
    assert!(
        found[0]
            .message
            .contains("`tests/test_pricing.py::test_b_reuses` passed"),
        "{}",
        found[0]
    );
    assert!(found[0].message.contains("KeyError"), "{}", found[0]);
}

#[tokio::test]
async fn a_file_without_tests_is_rejected_statically() {
    let project = Project::new();
    let report = project
        .check(
            "tests/test_pricing.py",
            "from pricing import discount\n\nHALF = discount(10, 'HALF')\n",
        )
        .await;
    let found = rejected_by(&report, "test_naming");
    assert!(found[0].message.contains("defines no test"), "{}", found[0]);
}

#[tokio::test]
async fn a_file_pytest_collects_nothing_from_is_rejected() {
    let project = Project::new();
    let report = project
        .check(
            "tests/test_pricing.py",
            "from pricing import discount\n\n__test__ = False\n\n\ndef test_half():\n    assert discount(10, 'HALF') == 5\n",
        )
        .await;
    let found = rejected_by(&report, "tests_pass");
    assert!(
        found[0]
            .message
            .contains("pytest collected no tests from tests/test_pricing.py"),
        "{}",
        found[0]
    );
}

#[tokio::test]
async fn a_test_that_does_not_raise_coverage_is_rejected() {
    let project = Project::new();
    let report = project
        .check(
            "tests/test_pricing.py",
            "from pricing import discount, shipping\n\n\ndef test_again():\n    assert discount(30) == 30\n    assert shipping(80) == 0\n",
        )
        .await;
    let found = rejected_by(&report, "coverage_gain");
    assert!(
        found[0]
            .message
            .contains("cover no line of `src/pricing.py`"),
        "{}",
        found[0]
    );
    assert!(
        found[0].message.contains("still uncovered: "),
        "{}",
        found[0]
    );
    assert_eq!(report.coverage[0].newly_covered, Vec::<u32>::new());
    assert!(matches!(
        status(&report, "suite_green"),
        RuleStatus::Skipped { .. }
    ));
}

#[tokio::test]
async fn a_test_that_breaks_another_is_rejected_by_the_whole_suite() {
    let project = Project::new();
    // Sorted before test_existing.py, so the leaked rate reaches the existing test.
    let report = project
        .check(
            "tests/test_a_foreign.py",
            "import pricing\n\n\ndef test_foreign_rate():\n    pricing.RATES['NL'] = 7\n    assert pricing.shipping(10, 'BE') == 15\n",
        )
        .await;
    let found = rejected_by(&report, "suite_green");
    assert!(
        found[0].message.contains(
            "`tests/test_existing.py::test_domestic_shipping` passed at the base commit but fails"
        ),
        "{}",
        found[0]
    );
}

#[tokio::test]
async fn a_test_that_makes_another_much_slower_is_named_against_the_base_timings() {
    let project = Project::new();
    // Sorted before test_existing.py: the rates it leaves behind slow the existing test down.
    let report = project
        .check(
            "tests/test_a_rates.py",
            "import time\n\nimport pricing\n\n\nclass SlowRates(dict):\n    \
             def __contains__(self, key):\n        time.sleep(1.5)\n        \
             return dict.__contains__(self, key)\n\n\n\
             def test_half_code_halves_the_total():\n    \
             assert pricing.discount(10, 'HALF') == 5\n    \
             pricing.RATES = SlowRates(pricing.RATES)\n",
        )
        .await;
    let slowed: Vec<&Finding> = report
        .findings
        .iter()
        .filter(|f| f.rule == "suite_green")
        .collect();
    assert!(
        slowed.iter().any(|f| !f.is_error()
            && f.message
                .starts_with("`tests/test_existing.py::test_domestic_shipping` took 1.")
            && f.message.contains("at the base commit")),
        "{:#?}",
        report.findings
    );
    // Only that test: the others did not reach the slow lookup.
    assert_eq!(slowed.len(), 1, "{slowed:#?}");
}

fn is_running(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        let state = stat
            .rsplit_once(") ")
            .and_then(|(_, rest)| rest.chars().next());
        !matches!(state, Some('Z' | 'X'))
    })
}

#[tokio::test]
async fn a_test_that_sleeps_past_the_timeout_is_killed_with_its_process_group() {
    let project = Project::new();
    let settings = ValidationSettings {
        timeout_secs: 4,
        ..settings()
    };
    let report = project
        .check_with(
            "tests/test_slow.py",
            "import os\nimport subprocess\nimport time\nfrom pricing import discount\n\n\n\
             def test_sleeps():\n    child = subprocess.Popen(['sleep', '120'])\n    \
             with open('pids', 'w') as f:\n        f.write(f'{os.getpid()}\\n{child.pid}\\n')\n    \
             time.sleep(120)\n    assert discount(10, 'HALF') == 5\n",
            &settings,
        )
        .await;
    let found = rejected_by(&report, "tests_pass");
    assert!(
        found[0].message.starts_with("timed out after"),
        "{}",
        found[0]
    );
    assert!(
        found[0]
            .message
            .contains("while running `tests/test_slow.py::test_sleeps`"),
        "{}",
        found[0]
    );
    // Inside its own PID namespace the test saw other pids than the machine's: look for any
    // process still working in the project instead.
    assert!(project.path().join("pids").is_file());
    for _ in 0..100 {
        let left = processes_in(project.path());
        if left.is_empty() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!(
        "still running after the timeout: {:?}",
        processes_in(project.path())
    );
}

/// The live processes of the machine whose working directory is under `dir`.
fn processes_in(dir: &Path) -> Vec<i32> {
    let dir = dir.canonicalize().unwrap();
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| {
            std::fs::read_link(format!("/proc/{pid}/cwd")).is_ok_and(|cwd| cwd.starts_with(&dir))
                && is_running(pid)
        })
        .collect()
}

#[tokio::test]
async fn a_test_never_sees_the_api_key_of_the_parent() {
    let project = Project::new();
    project.repo.write(
        "tests/test_key.py",
        "import os\nfrom pricing import discount\n\n\n\
         def test_uses_the_key():\n    seen = {k: v for k, v in os.environ.items() if 'KEY' in k or 'TOKEN' in k}\n    \
         with open('seen-env.txt', 'w') as f:\n        f.write(repr(seen))\n    \
         assert os.environ['OPENAI_API_KEY'].startswith('sk-')\n    assert discount(10, 'HALF') == 5\n",
    );
    let mut parent: Vec<(OsString, OsString)> = std::env::vars_os().collect();
    parent.push(("OPENAI_API_KEY".into(), "sk-test-secret-123".into()));
    parent.push(("GITHUB_TOKEN".into(), "ghp-secret-456".into()));
    let mut settings = settings();
    // Even asked for by name, a secret-looking variable is not passed.
    settings.pass_env = vec!["OPENAI_API_KEY".into()];
    let request = ValidationRequest {
        parent_env: Some(parent),
        ..project.request(&["tests/test_key.py"])
    };
    let report = validate(&settings, &request).await.unwrap();
    let seen = std::fs::read_to_string(project.path().join("seen-env.txt")).unwrap();
    assert_eq!(seen, "{}");
    let found = rejected_by(&report, "tests_pass");
    assert!(found[0].message.contains("KeyError"), "{}", found[0]);
    let json = serde_json::to_string(&report).unwrap();
    assert!(
        !json.contains("sk-test-secret") && !json.contains("ghp-secret"),
        "{json}"
    );
}

#[tokio::test]
async fn a_test_cannot_reach_the_network() {
    let project = Project::new();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let report = project
        .check(
            "tests/test_net.py",
            &format!(
                "import socket\nfrom pricing import discount\n\n\n\
                 def test_fetches_a_rate():\n    socket.create_connection(('127.0.0.1', {port}), timeout=5).close()\n    \
                 assert discount(10, 'HALF') == 5\n"
            ),
        )
        .await;
    if !pitcrew_sandbox::network_isolation_available().await {
        let warned = report.findings.iter().any(|f| f.rule == "sandbox");
        assert!(
            warned,
            "no warning that the network was reachable: {report:#?}"
        );
        return;
    }
    let found = rejected_by(&report, "tests_pass");
    // Landlock refuses the connection before the empty network namespace could.
    assert!(
        found[0].message.contains("Network is unreachable")
            || found[0].message.contains("Connection refused")
            || found[0].message.contains("Permission denied"),
        "{}",
        found[0]
    );
    assert_eq!(
        listener.accept().map(|_| ()).map_err(|e| e.kind()),
        Err(std::io::ErrorKind::WouldBlock),
        "the test reached the listener"
    );
}

#[tokio::test]
async fn the_report_lists_skipped_rules_with_reasons_for_other_kinds() {
    let project = Project::new();
    project.repo.write(
        "src/pricing.py",
        &include_str!("fixtures/pyproj/src/pricing.py")
            .replace("FOREIGN_RATE = 15", "FOREIGN_RATE = 20"),
    );
    let request = ValidationRequest {
        kind: TaskKind::Implement,
        ..project.request(&["src/pricing.py"])
    };
    let report = validate(&settings(), &request).await.unwrap();
    assert_eq!(report.outcome, Outcome::Accepted, "{report:#?}");
    assert_eq!(
        status(&report, "tests_pass"),
        &RuleStatus::Skipped {
            reason: "not enabled for task kind `implement`".into()
        }
    );
    assert_eq!(
        status(&report, "suite_green"),
        &RuleStatus::Ran { passed: true }
    );
    assert_eq!(
        status(&report, "toolchain"),
        &RuleStatus::Ran { passed: true }
    );
}

#[tokio::test]
async fn a_missing_test_runner_is_an_error_not_a_rejection() {
    let project = Project::new();
    project.repo.write("tests/test_pricing.py", GOOD_TESTS);
    let settings = ValidationSettings {
        coverage_command: "pitcrew-no-such-runner --data {data}".into(),
        ..settings()
    };
    let err = validate(&settings, &project.request(&["tests/test_pricing.py"]))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, pitcrew_validate::ValidateError::CommandNotFound { command, .. } if command.starts_with("pitcrew-no-such-runner")),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_test_task_that_also_rewrites_the_code_under_test_is_refused_before_anything_runs() {
    let project = Project::new();
    // The expectation is wrong; the rewritten module would make it pass.
    project.repo.write(
        "src/pricing.py",
        &include_str!("fixtures/pyproj/src/pricing.py").replace("total / 2", "total / 4"),
    );
    project.repo.write(
        "tests/test_quarter.py",
        "from pricing import discount\n\n\ndef test_half_is_a_quarter():\n    assert discount(100, 'HALF') == 25\n",
    );
    let report = validate(
        &settings(),
        &project.request(&["src/pricing.py", "tests/test_quarter.py"]),
    )
    .await
    .unwrap();
    let found = rejected_by(&report, "change_set");
    assert_eq!(found.len(), 1, "{found:#?}");
    assert_eq!(found[0].file.as_deref(), Some("src/pricing.py"));
    assert!(found[0].message.contains("only add or change test files"));
    assert!(matches!(
        status(&report, "tests_pass"),
        RuleStatus::Skipped { .. }
    ));
}

#[tokio::test]
async fn runner_configuration_and_shadowing_modules_are_never_executed() {
    let project = Project::new();
    let marker = tempfile::tempdir().unwrap();
    let ran = marker.path().join("ran");
    // Both would mark every test passed; neither may even run.
    let hook = format!(
        "import pathlib\npathlib.Path({ran:?}).write_text('ran')\n\
         def pytest_runtest_makereport(item, call):\n    pass\n",
        ran = ran.display().to_string()
    );
    project.repo.write("tests/conftest.py", &hook);
    project.repo.write("pytest.py", &hook);
    project.repo.write(
        "tests/test_pricing.py",
        "from pricing import discount\n\n\ndef test_wrong():\n    assert discount(10, 'HALF') == 7\n",
    );
    let report = validate(
        &settings(),
        &project.request(&["tests/conftest.py", "pytest.py", "tests/test_pricing.py"]),
    )
    .await
    .unwrap();
    let found = rejected_by(&report, "change_set");
    assert_eq!(found.len(), 2, "{found:#?}");
    assert!(found[0].message.contains("protected"), "{}", found[0]);
    assert!(found[1].message.contains("module `pytest`"), "{}", found[1]);
    assert!(!ran.exists(), "refused code ran");
}

#[tokio::test]
async fn a_test_that_changes_files_while_it_runs_is_caught_and_nothing_it_made_is_judged() {
    let project = Project::new();
    // Rewrites the module under test so its own wrong expectation passes, and drops a
    // conftest for later runs.
    let report = project
        .check(
            "tests/test_pricing.py",
            "import pathlib\nfrom pricing import discount\n\n\
             pathlib.Path('src/pricing.py').write_text(\
             pathlib.Path('src/pricing.py').read_text().replace('total / 2', 'total / 4'))\n\
             pathlib.Path('tests/conftest.py').write_text('')\n\n\n\
             def test_half_is_a_quarter():\n    assert discount(100, 'HALF') in (25, 50)\n",
        )
        .await;
    assert_eq!(report.outcome, Outcome::Rejected, "{report:#?}");
    let found = errors(&report, "worktree_unchanged");
    let text: Vec<&str> = found.iter().map(|f| f.message.as_str()).collect();
    assert!(
        text.iter()
            .any(|m| m.starts_with("`src/pricing.py` was changed")),
        "{text:?}"
    );
    assert!(
        text.iter()
            .any(|m| m.starts_with("`tests/conftest.py` was created")),
        "{text:?}"
    );
}

#[tokio::test]
async fn tests_made_up_at_run_time_are_not_counted() {
    let project = Project::new();
    let report = project
        .check(
            "tests/test_pricing.py",
            "from pricing import discount\n\n\
             for _name in ('test_made_up_a', 'test_made_up_b'):\n    globals()[_name] = lambda: None\n\n\n\
             def test_half():\n    assert discount(10, 'HALF') == 5\n",
        )
        .await;
    let found = rejected_by(&report, "tests_pass");
    assert_eq!(found.len(), 2, "{found:#?}");
    assert!(
        found[0]
            .message
            .contains("`tests/test_pricing.py::test_made_up_a`, which is not a test function"),
        "{}",
        found[0]
    );
}

#[tokio::test]
async fn a_test_cannot_read_or_write_outside_its_worktree() {
    let project = Project::new();
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(
        outside.path().join(".env"),
        "OPENAI_API_KEY=sk-outside-sentinel\n",
    )
    .unwrap();
    let target = outside.path().display().to_string();
    let report = project
        .check(
            "tests/test_pricing.py",
            &format!(
                "import pathlib\nfrom pricing import discount\n\nOUTSIDE = pathlib.Path({target:?})\n\n\n\
                 def test_reads_outside():\n    assert 'sk-' in (OUTSIDE / '.env').read_text()\n\n\n\
                 def test_writes_outside():\n    (OUTSIDE / 'pwned').write_text('x')\n    assert discount(10, 'HALF') == 5\n"
            ),
        )
        .await;
    let found = rejected_by(&report, "tests_pass");
    assert_eq!(found.len(), 2, "{found:#?}");
    for finding in &found {
        // Denied, or not even there: the sandbox hides what it may not see.
        assert!(
            finding.message.contains("PermissionError")
                || finding.message.contains("FileNotFoundError"),
            "{finding}"
        );
        assert!(
            !finding.message.contains("sk-outside-sentinel"),
            "{finding}"
        );
    }
    assert!(!outside.path().join("pwned").exists());
    assert!(report.confined);
}

/// Ordinary test files in the styles real suites use must not trip the new gates: fixtures,
/// parametrization, classes, unittest, tmp_path, monkeypatch, capsys, caplog, approx, mocks,
/// subprocesses, conditional skips that do not skip, a helper module next to the tests.
#[tokio::test]
async fn ordinary_test_files_in_common_styles_are_accepted() {
    let project = Project::new();
    project.repo.write(
        "tests/helpers.py",
        "def totals():\n    return [0, 10, 49.99, 50, 120]\n",
    );
    project.repo.write(
        "tests/test_pricing_styles.py",
        r#"import json
import logging
import subprocess
import sys
import unittest
from unittest import mock

import pytest

import pricing
from pricing import discount, shipping
from helpers import totals


@pytest.fixture
def order(tmp_path):
    path = tmp_path / "order.json"
    path.write_text(json.dumps({"total": 100, "code": "HALF"}))
    return json.loads(path.read_text())


def test_fixture_and_tmp_path(order):
    assert discount(order["total"], order["code"]) == 50


@pytest.mark.parametrize("total, expected", [(4, 0), (15, 5), (10, 0)])
def test_ten_off(total, expected):
    assert discount(total, "TENOFF") == expected


def test_approx():
    assert discount(0.3, "HALF") == pytest.approx(0.15)


def test_raises_with_match():
    with pytest.raises(ValueError, match="negative"):
        discount(-5)
    with pytest.raises(KeyError):
        discount(1, "NOPE")


def test_monkeypatch_rates(monkeypatch):
    monkeypatch.setitem(pricing.RATES, "BE", 7)
    assert shipping(10, "BE") == 7


def test_mock_patch():
    with mock.patch.object(pricing, "FOREIGN_RATE", 99):
        assert shipping(10, "US") == 99


def test_capsys_and_caplog(capsys, caplog):
    print(shipping(60))
    with caplog.at_level(logging.INFO):
        logging.getLogger("pricing").info("shipped %s", shipping(10, "FR"))
    assert capsys.readouterr().out == "0\n"
    assert "shipped 15" in caplog.text


def test_subprocess_runs_python():
    out = subprocess.run(
        [sys.executable, "-c", "print(6 * 7)"], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "42"


@pytest.mark.skipif(sys.version_info < (3, 0), reason="python 2 is gone")
def test_helpers_feed_shipping():
    assert [shipping(t) for t in totals()] == [5, 5, 5, 0, 0]


def test_exit_is_a_system_exit():
    with pytest.raises(SystemExit):
        sys.exit(1)


class TestShipping:
    def test_foreign(self):
        assert shipping(10, "US") == 15

    @pytest.mark.parametrize("country", ["NL"])
    def test_domestic(self, country):
        assert shipping(10, country) == 5


class DiscountCase(unittest.TestCase):
    def test_no_code(self):
        self.assertEqual(discount(7), 7)

    def test_subtests(self):
        for total in (0, 2, 8):
            with self.subTest(total=total):
                self.assertEqual(discount(total, "HALF") * 2, total)
"#,
    );
    let report = validate(
        &settings(),
        &project.request(&["tests/helpers.py", "tests/test_pricing_styles.py"]),
    )
    .await
    .unwrap();
    assert_eq!(report.outcome, Outcome::Accepted, "{report:#?}");
    assert!(report.confined);
    assert_eq!(report.verified.len(), 2);
}

/// Tests that run every line but check nothing precise: coverage rises, mutants survive.
const WEAK_TESTS: &str = r#"from pricing import discount, shipping


def outcome(function, *args):
    try:
        return function(*args)
    except Exception as error:
        return error


def test_discount_gives_an_answer():
    for args in [(100, "HALF"), (100, "TENOFF"), (-1,), (1, "NOPE")]:
        result = outcome(discount, *args)
        assert result is not None
        assert isinstance(result, (int, float, Exception))


def test_shipping_gives_a_number():
    assert isinstance(shipping(10, "BE"), int)
    assert len([shipping(60)]) == 1
"#;

#[tokio::test]
async fn tests_that_raise_coverage_but_check_nothing_are_rejected_by_surviving_mutants() {
    let project = Project::new();
    let report = project.check("tests/test_pricing.py", WEAK_TESTS).await;
    assert_eq!(
        status(&report, "coverage_gain"),
        &RuleStatus::Ran { passed: true }
    );
    let found = rejected_by(&report, "kills_mutants");
    assert!(
        found[0].message.contains("missed by the existing tests"),
        "{}",
        found[0]
    );
    // The surviving mutants are errors the model can act on: a line, a change — one per line
    // first, so the HALF line, which nothing checks, is among them.
    let survivor = found
        .iter()
        .find(|f| f.line == Some(line_of("return total / 2")))
        .unwrap_or_else(|| panic!("no surviving mutant of the HALF line: {found:#?}"));
    assert!(
        survivor
            .message
            .contains("went unnoticed by the new tests: `"),
        "{survivor}"
    );
    let mutation = &report.evidence.mutation[0];
    assert!(mutation.score().unwrap() < 0.5, "{mutation:?}");
}

#[tokio::test]
async fn the_evidence_card_says_what_was_shown() {
    let project = Project::new();
    let report = project.check("tests/test_pricing.py", GOOD_TESTS).await;
    assert_eq!(report.outcome, Outcome::Accepted, "{report:#?}");
    let card = report.card().join("\n");
    assert!(
        card.contains("tests: 6 collected, 6 passed; passed again in reverse order"),
        "{card}"
    );
    assert!(
        card.contains("coverage of src/pricing.py: 11 → 18 of 18 lines (+7: lines"),
        "{card}"
    );
    assert!(card.contains("mutants of src/pricing.py: "), "{card}");
    assert!(card.contains("time: static checks"), "{card}");
    assert!(card.contains("sandboxed"), "{card}");
    let stages: Vec<&str> = report
        .evidence
        .stages
        .iter()
        .map(|s| s.stage.as_str())
        .collect();
    assert_eq!(
        stages,
        [
            "static checks",
            "first run",
            "reruns",
            "mutants (alongside the reruns)",
            "whole suite"
        ]
    );
}
