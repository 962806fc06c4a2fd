//! The static rules on small sources, one behaviour per test.

use pitcrew_core::Severity;

use super::*;

fn file(path: &str, source: &str) -> Written {
    let mut files = vec![Written {
        path: path.into(),
        language: crate::Language::from_path(path),
        source: source.into(),
        tree: None,
    }];
    let findings = syntax(&mut files);
    assert!(findings.is_empty(), "{path} must parse: {findings:?}");
    files.pop().unwrap()
}

fn messages(findings: &[Finding], severity: Severity) -> Vec<String> {
    findings
        .iter()
        .filter(|f| f.severity == severity)
        .map(|f| f.message.clone())
        .collect()
}

fn errors(findings: &[Finding]) -> Vec<String> {
    messages(findings, Severity::Error)
}

#[test]
fn read_files_reports_missing_and_empty_files() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("empty.py"), "  \n").unwrap();
    std::fs::write(dir.path().join("ok.py"), "x = 1\n").unwrap();
    std::fs::write(dir.path().join("bin.py"), [0xff, 0xfe]).unwrap();
    let paths = ["missing.py", "empty.py", "ok.py", "bin.py"].map(String::from);
    let (files, missing, empty) = read_files(dir.path(), &paths);
    assert_eq!(files.len(), 1);
    assert_eq!(files[0].path, "ok.py");
    assert_eq!(missing.len(), 2);
    assert!(missing[0].message.contains("`missing.py` does not exist"));
    assert!(missing[1].message.contains("not UTF-8"));
    assert_eq!(empty[0].rule, "not_empty");
    assert_eq!(empty[0].file.as_deref(), Some("empty.py"));
}

#[test]
fn syntax_errors_are_findings_and_leave_no_tree() {
    let mut files = vec![Written {
        path: "tests/test_a.py".into(),
        language: Some(crate::Language::Python),
        source: "def test_a(:\n    pass\n".into(),
        tree: None,
    }];
    let findings = syntax(&mut files);
    assert_eq!(findings[0].rule, "syntax");
    assert_eq!(findings[0].line, Some(1));
    assert!(
        findings[0].message.contains("def test_a(:"),
        "{}",
        findings[0].message
    );
    assert!(files[0].tree.is_none());
}

#[test]
fn naming_follows_pytest_collection() {
    let good = file(
        "tests/test_calc.py",
        "from calc import add\n\ndef test_add():\n    assert add(1, 2) == 3\n\n\
         class TestCalc:\n    def test_sub(self):\n        assert add(1, -1) == 0\n",
    );
    assert_eq!(test_naming(&[good], true), Vec::new());

    let misnamed = file("tests/calc_tests.py", "def test_add():\n    assert 1\n");
    let found = errors(&test_naming(&[misnamed], true));
    assert!(found[0].contains("must be named `test_*.py`"), "{found:?}");

    let classes = file(
        "tests/test_c.py",
        "class CalcTests:\n    def test_a(self):\n        assert f()\n\n\
         class TestInit:\n    def __init__(self):\n        pass\n    def test_b(self):\n        assert f()\n\n\
         import unittest\nclass Calc(unittest.TestCase):\n    def test_c(self):\n        self.assertEqual(f(), 1)\n",
    );
    let found = errors(&test_naming(&[classes], true));
    assert_eq!(found.len(), 2, "{found:?}");
    assert!(found[0].contains("`test_a` (line 2) will not run: class `CalcTests`"));
    assert!(found[1].contains("`TestInit` defines `__init__`"));

    let orphan = file(
        "tests/test_d.py",
        "def check_add():\n    assert add(1, 2) == 3\n\ndef helper(x):\n    assert x\n\n\
         def test_e():\n    helper(add(1, 1))\n",
    );
    let found = errors(&test_naming(&[orphan], true));
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].contains("`check_add` (line 1) asserts but never runs"));

    let empty = file("tests/test_e.py", "import calc\n");
    let found = errors(&test_naming(&[empty], true));
    assert!(found[0].contains("defines no test"), "{found:?}");

    let not_a_test = file("src/calc.py", "def add(a, b):\n    return a + b\n");
    let found = errors(&test_naming(&[not_a_test], true));
    assert!(found[0].contains("none of the written files"), "{found:?}");
}

#[test]
fn naming_for_go_javascript_and_rust() {
    let go = file(
        "calc/calc_test.go",
        "package calc\nimport \"testing\"\nfunc TestAdd(t *testing.T) { if Add(1, 2) != 3 { t.Fatal(\"no\") } }\n\
         func Testsub(t *testing.T) {}\nfunc TestMain(m *testing.M) {}\n",
    );
    let found = errors(&test_naming(&[go], true));
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].contains("rename it `TestSub`"), "{found:?}");

    let js = file(
        "src/calc.js",
        "const { add } = require('./calc');\ntest('adds', () => { expect(add(1, 2)).toBe(3); });\n",
    );
    let found = errors(&test_naming(&[js], true));
    assert!(
        found[0].contains("rename `src/calc.js` (e.g. `calc.test.js`)"),
        "{found:?}"
    );

    let skipped = file(
        "calc.test.ts",
        "it.skip('adds', () => { expect(add(1, 2)).toBe(3); });\n",
    );
    assert!(errors(&test_naming(&[skipped], true))[0].contains("it is skipped"));

    let rust = file(
        "tests/calc.rs",
        "#[test]\nfn adds() { assert_eq!(calc::add(1, 2), 3); }\n#[tokio::test]\nasync fn adds_async() { assert!(true); }\n",
    );
    assert_eq!(test_naming(&[rust], true), Vec::new());
}

#[test]
fn python_tests_without_real_assertions_are_errors() {
    let source = "\
import pytest
from unittest import mock
from calc import add, div

def test_nothing():
    add(1, 2)

def test_true():
    assert True

def test_constants():
    assert 1 == 1, 'math'
    assert (2 > 1) and not False

def test_same():
    x = add(1, 2)
    assert x == x

class TestUnit:
    def test_assert_true(self):
        self.assertTrue(True)

def test_real():
    assert add(1, 2) == 3

def test_raises():
    with pytest.raises(ZeroDivisionError):
        div(1, 0)

def test_mock():
    m = mock.Mock()
    m(1)
    m.assert_called_once()

def check(value):
    assert value == 3

def test_helper():
    check(add(1, 2))

def test_mixed():
    assert True
    assert add(2, 2) == 4

def test_fstring():
    assert f'{add(1, 1)}' == '2'
";
    let findings = assertions(&[file("tests/test_calc.py", source)]);
    let errors = errors(&findings);
    assert_eq!(errors.len(), 5, "{errors:#?}");
    assert!(errors[0].contains("`test_nothing` (line 5) asserts nothing"));
    assert!(errors[1].contains("`test_true` (line 8) only asserts constants"));
    assert!(errors[1].contains("`assert True` (line 9)"));
    assert!(errors[2].contains("`assert 1 == 1, 'math'` (line 12)"));
    assert!(errors[2].contains("(line 13)"));
    assert!(errors[3].contains("`assert x == x` (line 17)"));
    assert!(errors[4].contains("`self.assertTrue(True)` (line 21)"));
    let warnings = messages(&findings, Severity::Warning);
    assert_eq!(
        warnings,
        ["`assert True` (line 42) in `test_mixed` can never fail"]
    );
    assert_eq!(findings[0].line, Some(5));
    assert_eq!(findings[0].file.as_deref(), Some("tests/test_calc.py"));
}

#[test]
fn assertions_in_rust_javascript_and_go() {
    let rust = file(
        "src/lib.rs",
        "#[cfg(test)]\nmod tests {\n    #[test]\n    fn trivial() { assert!(true); assert_eq!(1, 1, \"x\"); }\n\
         #[test]\n    fn real() { assert_eq!(super::add(1, 2), 3); }\n\
         #[test]\n    #[should_panic]\n    fn panics() { super::div(1, 0); }\n\
         #[test]\n    fn nothing() { super::add(1, 2); }\n}\n",
    );
    let errors_rs = errors(&assertions(&[rust]));
    assert_eq!(errors_rs.len(), 2, "{errors_rs:#?}");
    assert!(errors_rs[0].contains("`trivial`") && errors_rs[0].contains("only asserts constants"));
    assert!(errors_rs[1].contains("`nothing`") && errors_rs[1].contains("asserts nothing"));

    let js = file(
        "calc.test.js",
        "test('trivial', () => { expect(true).toBe(true); });\n\
         test('real', () => { expect(add(1, 2)).toBe(3); });\n\
         it('asserts', () => { assert.equal(add(1, 1), 2); });\n\
         it('nothing', () => { add(1, 2); });\n",
    );
    let errors_js = errors(&assertions(&[js]));
    assert_eq!(errors_js.len(), 2, "{errors_js:#?}");
    assert!(errors_js[0].contains("`trivial`"));
    assert!(errors_js[1].contains("`nothing`"));

    let go = file(
        "calc_test.go",
        "package calc\nimport \"testing\"\n\
         func TestAdd(t *testing.T) { if Add(1, 2) != 3 { t.Errorf(\"got %d\", Add(1, 2)) } }\n\
         func TestNothing(t *testing.T) { Add(1, 2) }\n",
    );
    let errors_go = errors(&assertions(&[go]));
    assert_eq!(errors_go.len(), 1, "{errors_go:#?}");
    assert!(errors_go[0].contains("`TestNothing`"));
}

#[test]
fn python_tests_must_import_and_use_the_target() {
    let targets = ["src/pkg/calc.py".to_string()];
    let ok = [
        "from calc import add\ndef test_a():\n    assert add(1, 2) == 3\n",
        "from pkg.calc import add as plus\ndef test_a():\n    assert plus(1, 2) == 3\n",
        "import src.pkg.calc\ndef test_a():\n    assert src.pkg.calc.add(1, 2) == 3\n",
        "from pkg import calc\ndef test_a():\n    assert calc.add(1, 2) == 3\n",
        "from .calc import *\ndef test_a():\n    assert add(1, 2) == 3\n",
        "def test_a():\n    import calc\n    assert calc.add(1, 2) == 3\n",
    ];
    for source in ok {
        let findings = imports_target(&[file("tests/test_calc.py", source)], &targets);
        assert_eq!(findings, Vec::new(), "{source}");
    }
    let unused = file(
        "tests/test_calc.py",
        "from calc import add\ndef test_a():\n    assert 2 + 1 == 3\n",
    );
    let found = errors(&imports_target(&[unused], &targets));
    assert!(
        found[0].contains("imports `add` from `src/pkg/calc.py` but no test uses it"),
        "{found:?}"
    );

    let other = file(
        "tests/test_calc.py",
        "import calculator\nfrom pkg import other\ndef test_a():\n    assert calculator.add(1, 2) == 3\n",
    );
    let found = errors(&imports_target(&[other], &targets));
    assert!(
        found[0].contains("as `calc` or `pkg.calc` or `src.pkg.calc`"),
        "{found:?}"
    );
}

#[test]
fn other_languages_must_import_the_target() {
    let js = file(
        "test/calc.test.ts",
        "import { add } from '../src/calc';\ntest('a', () => { expect(add(1, 2)).toBe(3); });\n",
    );
    assert_eq!(imports_target(&[js], &["src/calc.ts".into()]), Vec::new());
    let js_other = file(
        "test/calc.test.js",
        "const m = require('../src/math');\ntest('a', () => { expect(m.add(1, 2)).toBe(3); });\n",
    );
    assert_eq!(
        errors(&imports_target(&[js_other], &["src/calc.js".into()])).len(),
        1
    );

    let go = file(
        "calc/calc_test.go",
        "package calc\nimport \"testing\"\nfunc TestAdd(t *testing.T) { if Add(1, 2) != 3 { t.Fatal() } }\n",
    );
    assert_eq!(imports_target(&[go], &["calc/calc.go".into()]), Vec::new());
}

#[test]
fn placeholders_are_errors_and_todos_warnings() {
    let py = file(
        "tests/test_calc.py",
        "from calc import add\n\
         # ... existing code ...\n\
         def test_add():\n    assert add(1, 2) == 3  # TODO: more cases\n\n\
         def test_rest():\n    ...\n\n\
         def helper():\n    raise NotImplementedError\n\n\
         from typing import Protocol, overload\n\
         class Adder(Protocol):\n    def add(self, a, b): ...\n\n\
         @overload\ndef f(x: int) -> int: ...\n\
         s = '# not a comment about existing code'\n",
    );
    let findings = no_placeholders(&[py]);
    let errs = errors(&findings);
    assert!(
        errs[0].contains("line 2 leaves code out (\"existing code\")"),
        "{errs:#?}"
    );
    assert!(
        errs[1].contains("line 10 is a stub (`raise NotImplementedError`)"),
        "{errs:#?}"
    );
    // The string's `#` is read as a comment: a false alarm to read, never a miss.
    assert!(errs[2].contains("line 18"), "{errs:#?}");
    assert!(
        errs[3].contains("`test_rest` (line 6) has no body but `...`"),
        "{errs:#?}"
    );
    assert_eq!(errs.len(), 4, "{errs:#?}");
    let warnings = messages(&findings, Severity::Warning);
    assert_eq!(warnings.len(), 1);
    assert!(warnings[0].contains("line 4 leaves work undone"));

    let rs = file(
        "src/lib.rs",
        "pub fn add(a: i32, b: i32) -> i32 {\n    todo!()\n}\n// rest of the module unchanged\n",
    );
    let errs = errors(&no_placeholders(&[rs]));
    assert_eq!(errs.len(), 2, "{errs:#?}");
    assert!(errs[0].contains("stub (`todo!(`)"));
    assert!(errs[1].contains("\"rest of the\""));
}

#[test]
fn line_ranges_compress_runs() {
    assert_eq!(line_ranges(&[1, 2, 3, 5, 7, 8]), "1-3, 5, 7-8");
    assert_eq!(line_ranges(&[4]), "4");
    assert_eq!(line_ranges(&[]), "");
}
