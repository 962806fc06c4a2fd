//! `test_integrity`: the new Python tests run for real. A skipped or expected-to-fail test
//! proves nothing, and a test file that exits the process, defines pytest hooks, loads
//! plugins or reaches into pytest's internals can make the runner report what it likes.
//! Found statically, before anything runs; the test runs add `xfail_strict` so an
//! unexpected pass of an `xfail` is a failure there too.

use pitcrew_core::Finding;
use tree_sitter::Node;

use crate::Language;
use crate::ast::{descendants, line, named_children, text};
use crate::rules::Rule;
use crate::testfns::{Written, undecorated};

const RULE: &str = Rule::TestIntegrity.as_str();

/// Marker and decorator names that always keep a test from running or from counting.
/// (Conditional skips — `skipif`, `importorskip` — are judged when they happen: a skipped
/// test is an error of `tests_pass`.)
const NOT_RUN_MARKERS: &[&str] = &["skip", "xfail", "expectedFailure"];

/// Calls that skip, expect failure or end the test process.
const ESCAPE_CALLS: &[(&str, &str)] = &[
    ("pytest.skip", "skips the test"),
    ("pytest.xfail", "marks the test as an expected failure"),
    ("pytest.exit", "ends the test run early"),
    ("skipTest", "skips the test"),
    ("os._exit", "ends the test process"),
    ("os.abort", "ends the test process"),
    ("sys.exit", "ends the test process"),
    ("exit", "ends the test process"),
    ("quit", "ends the test process"),
];

/// Calls of [`ESCAPE_CALLS`] that raise `SystemExit`, which a test may check for.
const CATCHABLE_EXITS: &[&str] = &["sys.exit", "exit", "quit"];

/// Modules whose use means reaching into the test runner.
const RUNNER_INTERNALS: &[&str] = &["_pytest", "pluggy"];

/// Findings for the Python test files among `files`.
pub(crate) fn test_integrity(files: &[Written]) -> Vec<Finding> {
    let mut findings = Vec::new();
    for file in files
        .iter()
        .filter(|f| f.language == Some(Language::Python) && f.is_test())
    {
        let Some(tree) = &file.tree else { continue };
        let source = file.source.as_str();
        let at = |node: Node, message: String| {
            Finding::error(RULE, message)
                .in_file(&file.path)
                .at_line(line(node))
        };
        let root = tree.root_node();
        for item in named_children(root) {
            if let Some(finding) = module_level(item, source) {
                findings.push(at(item, finding));
            }
        }
        for node in descendants(root) {
            let message = match node.kind() {
                "decorator" => not_run_marker(text(node, source)).map(|marker| {
                    format!(
                        "`{}` keeps the test from running or from counting ({marker}); a \
                         skipped or expected-to-fail test proves nothing: remove it",
                        text(node, source).trim()
                    )
                }),
                // `request.applymarker(pytest.mark.xfail)`, `[pytest.mark.skip, …]`.
                "attribute" if node.parent().is_none_or(|p| p.kind() != "decorator") => {
                    let expression = text(node, source);
                    let marks = expression.contains("mark.") || expression.starts_with("unittest.");
                    marks
                        .then(|| not_run_marker(expression))
                        .flatten()
                        .filter(|_| !inside_decorator(node))
                        .map(|marker| {
                            format!(
                                "`{expression}` marks the test {marker} while it runs; a skipped \
                                 or expected-to-fail test proves nothing: remove it"
                            )
                        })
                }
                "call" => escape_call(node, source).map(|(call, effect)| {
                    format!("`{call}(…)` {effect}; tests must run to their end and pass")
                }),
                "import_statement" | "import_from_statement" => {
                    runner_import(node, source).map(|module| {
                        format!(
                            "imports `{module}`, the test runner's internals; tests may use \
                             pytest's public API only"
                        )
                    })
                }
                _ => None,
            };
            if let Some(message) = message {
                findings.push(at(node, message));
            }
        }
    }
    findings
}

/// Module-level definitions that change the runner: hooks, plugins, marks on every test.
fn module_level(item: Node, source: &str) -> Option<String> {
    let item = undecorated(item);
    match item.kind() {
        "function_definition" => {
            let name = item
                .child_by_field_name("name")
                .map_or("", |n| text(n, source));
            name.starts_with("pytest_").then(|| {
                format!(
                    "defines `{name}`, a pytest hook: a test file may not change how pytest \
                     collects, runs or reports tests"
                )
            })
        }
        "expression_statement" => {
            let assignment = named_children(item)
                .into_iter()
                .find(|n| n.kind() == "assignment")?;
            let target = assignment
                .child_by_field_name("left")
                .map_or("", |n| text(n, source));
            let value = assignment
                .child_by_field_name("right")
                .map_or("", |n| text(n, source));
            match target {
                "pytest_plugins" => Some(
                    "sets `pytest_plugins`: a test file may not load pytest plugins".to_string(),
                ),
                "pytestmark" => not_run_marker(value).map(|marker| {
                    format!(
                        "`pytestmark` applies `{marker}` to every test of the file; a skipped \
                         or expected-to-fail test proves nothing: remove it"
                    )
                }),
                _ => None,
            }
        }
        _ => None,
    }
}

/// The not-run marker a decorator or mark expression uses, e.g. `xfail` in
/// `@pytest.mark.xfail(reason=…)`, `skip` in `@unittest.skip("…")` or a bare `@skip`.
fn not_run_marker(expression: &str) -> Option<&'static str> {
    let callee = expression
        .trim()
        .trim_start_matches('@')
        .split('(')
        .next()
        .unwrap_or("")
        .trim();
    expression
        .split(|c: char| !(c.is_alphanumeric() || c == '_' || c == '.'))
        .find_map(|token| {
            let segments: Vec<&str> = token.split('.').collect();
            let last = *segments.last()?;
            let marker = NOT_RUN_MARKERS.iter().copied().find(|m| *m == last)?;
            let qualified = segments.len() >= 2
                && matches!(segments[segments.len() - 2], "mark" | "unittest" | "case");
            let bare = segments.len() == 1 && token == callee;
            (qualified || bare).then_some(marker)
        })
}

/// Whether `node` is part of a decorator (judged as a whole there).
fn inside_decorator(node: Node) -> bool {
    let mut current = node.parent();
    while let Some(n) = current {
        if n.kind() == "decorator" {
            return true;
        }
        current = n.parent();
    }
    false
}

/// The escape a call makes, if any: `(callee, what it does)`. `sys.exit()` inside
/// `with pytest.raises(SystemExit)` is a test of the exit, not an escape.
fn escape_call<'s>(call: Node, source: &'s str) -> Option<(&'s str, &'static str)> {
    let callee = text(call.child_by_field_name("function")?, source);
    let (_, effect) = ESCAPE_CALLS.iter().find(|(name, _)| {
        callee == *name || (*name == "skipTest" && callee.ends_with(".skipTest"))
    })?;
    if CATCHABLE_EXITS.contains(&callee) && inside_raises_system_exit(call, source) {
        return None;
    }
    Some((callee, effect))
}

/// Whether `node` is in the body of `with pytest.raises(SystemExit…)` (or `BaseException`).
fn inside_raises_system_exit(node: Node, source: &str) -> bool {
    let mut current = node.parent();
    while let Some(n) = current {
        if n.kind() == "with_statement" {
            let items = n
                .child_by_field_name("body")
                .map_or(text(n, source), |body| {
                    source.get(n.start_byte()..body.start_byte()).unwrap_or("")
                });
            if items.contains("raises(SystemExit") || items.contains("raises(BaseException") {
                return true;
            }
        }
        current = n.parent();
    }
    false
}

/// The runner-internal module an import names, if any.
fn runner_import<'s>(import: Node, source: &'s str) -> Option<&'s str> {
    descendants(import)
        .filter(|n| n.kind() == "dotted_name")
        .map(|n| text(n, source))
        .find(|module| {
            let top = module.split('.').next().unwrap_or("");
            RUNNER_INTERNALS.contains(&top)
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::syntax::parse;

    fn check(source: &str) -> Vec<Finding> {
        let file = Written {
            path: "tests/test_m.py".into(),
            language: Some(Language::Python),
            source: source.into(),
            tree: Some(parse(Language::Python, source)),
        };
        test_integrity(std::slice::from_ref(&file))
    }

    #[test]
    fn tests_that_cannot_fail_or_that_steer_the_runner_are_refused() {
        for (source, expected) in [
            (
                "import pytest\n@pytest.mark.xfail\ndef test_a():\n    assert 1 == 2\n",
                "xfail",
            ),
            (
                "import pytest\n@pytest.mark.xfail(strict=False, reason='x')\ndef test_a():\n    assert 1 == 1\n",
                "xfail",
            ),
            (
                "import pytest\n@pytest.mark.skip\ndef test_a():\n    assert 1 == 2\n",
                "skip",
            ),
            (
                "import unittest\nclass TestA(unittest.TestCase):\n    @unittest.skip('no')\n    def test_a(self):\n        self.assertEqual(1, 2)\n",
                "skip",
            ),
            (
                "from unittest import skip\nclass TestA:\n    @skip\n    def test_a(self):\n        assert 1 == 2\n",
                "skip",
            ),
            (
                "import unittest\nclass TestA(unittest.TestCase):\n    @unittest.expectedFailure\n    def test_a(self):\n        self.assertEqual(1, 2)\n",
                "expectedFailure",
            ),
            (
                "import pytest\npytestmark = pytest.mark.xfail\ndef test_a():\n    assert 1 == 2\n",
                "pytestmark",
            ),
            (
                "import pytest\ndef test_a():\n    pytest.skip('later')\n",
                "pytest.skip",
            ),
            (
                "import pytest\ndef test_a(request):\n    request.applymarker(pytest.mark.xfail(run=True))\n    assert 1 == 2\n",
                "marks the test xfail",
            ),
            (
                "import pytest\ndef test_a():\n    pytest.xfail('later')\n",
                "pytest.xfail",
            ),
            (
                "import pytest\ndef test_a():\n    assert 1\n    pytest.exit('done', returncode=0)\n",
                "pytest.exit",
            ),
            (
                "import sys, pytest\ndef test_a():\n    with pytest.raises(ValueError):\n        sys.exit(0)\n",
                "sys.exit",
            ),
            (
                "import os\ndef test_a():\n    assert 1\n    os._exit(0)\n",
                "os._exit",
            ),
            ("import sys\ndef test_a():\n    sys.exit(0)\n", "sys.exit"),
            (
                "import unittest\nclass TestA(unittest.TestCase):\n    def test_a(self):\n        self.skipTest('no')\n",
                "skipTest",
            ),
            (
                "def pytest_runtest_makereport(item, call):\n    pass\ndef test_a():\n    assert 1 == 2\n",
                "pytest hook",
            ),
            (
                "pytest_plugins = ['evil']\ndef test_a():\n    assert 1 == 2\n",
                "pytest_plugins",
            ),
            (
                "from _pytest.reports import TestReport\ndef test_a():\n    assert 1 == 2\n",
                "_pytest",
            ),
            (
                "import _pytest.runner\ndef test_a():\n    assert 1 == 2\n",
                "_pytest",
            ),
            (
                "import pluggy\ndef test_a():\n    assert 1 == 2\n",
                "pluggy",
            ),
        ] {
            let findings = check(source);
            assert!(
                findings.iter().any(|f| f.message.contains(expected)),
                "{expected}: {findings:?}"
            );
            assert!(findings.iter().all(Finding::is_error));
        }
    }

    #[test]
    fn ordinary_tests_pass() {
        let source = "\
import pytest
from src.calc import div

pytestmark = pytest.mark.usefixtures('tmp_path')


@pytest.fixture
def numbers():
    return [1, 2]


@pytest.mark.parametrize('a,b', [(4, 2), (9, 3)])
def test_div(a, b):
    assert div(a, b) * b == a


@pytest.mark.parametrize('mode', ['skip', 'xfail'])
def test_modes(mode):
    assert mode in ('skip', 'xfail')


def test_div_by_zero():
    with pytest.raises(ZeroDivisionError):
        div(1, 0)


class TestExit:
    def test_exit_code(self, numbers):
        exit_code = sum(numbers)
        assert exit_code == 3

    def test_exit_raises(self):
        import sys
        with pytest.raises(SystemExit) as stopped:
            sys.exit(3)
        assert stopped.value.code == 3


@pytest.mark.skipif(False, reason='runs everywhere')
def test_optional():
    json = pytest.importorskip('json')
    assert json.loads('1') == 1
";
        assert_eq!(check(source), Vec::new());
    }
}
