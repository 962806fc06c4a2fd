//! The parsers on reports written by the real tools (pytest 9, coverage.py 7), trimmed.

use super::*;

const PYTEST_JUNIT: &str = r#"<?xml version="1.0" encoding="utf-8"?><testsuites name="pytest tests"><testsuite name="pytest" errors="0" failures="2" skipped="2" tests="5" time="0.093"><testcase classname="tests.test_calc" name="test_add" file="tests/test_calc.py" line="3" time="0.001" /><testcase classname="tests.test_calc.TestDiv" name="test_div[1]" file="tests/test_calc.py" line="7" time="0.001"><failure message="assert 1.0 == (1 + 1)&#10; +  where 1.0 = div(1, 1)">self = &lt;test_calc.TestDiv object at 0x7f3ba1e8f3d0&gt;, a = 1

&gt;       assert div(a, 1) == a + 1
E       assert 1.0 == (1 + 1)

tests/test_calc.py:10: AssertionError</failure></testcase><testcase classname="tests.test_calc.TestDiv" name="test_err" file="tests/test_calc.py" line="11" time="0.000"><failure message="ValueError: no">src/calc.py:6: ValueError</failure></testcase><testcase classname="tests.test_calc.TestDiv" name="test_x" file="tests/test_calc.py" line="14" time="0.000"><skipped type="pytest.xfail" message="" /></testcase><testcase classname="tests.test_calc.TestDiv" name="test_skip" file="tests/test_calc.py" line="17" time="0.000"><skipped type="pytest.skip" message="nah">/tmp/pyprobe/tests/test_calc.py:19: nah</skipped></testcase></testsuite></testsuites>"#;

#[test]
fn junit_from_pytest_gives_every_case_with_its_result() {
    let cases = parse_junit(PYTEST_JUNIT).unwrap();
    assert_eq!(cases.len(), 5);
    assert_eq!(
        cases[0],
        TestCase {
            classname: "tests.test_calc".into(),
            name: "test_add".into(),
            file: Some("tests/test_calc.py".into()),
            line: Some(4),
            duration_ms: Some(1),
            result: CaseResult::Passed,
        }
    );
    let CaseResult::Failed { message, details } = &cases[1].result else {
        panic!("{:?}", cases[1]);
    };
    assert_eq!(message, "assert 1.0 == (1 + 1)\n +  where 1.0 = div(1, 1)");
    assert!(
        details.ends_with("tests/test_calc.py:10: AssertionError"),
        "{details}"
    );
    assert!(details.contains(">       assert div(a, 1) == a + 1"));
    assert_eq!(cases[1].name, "test_div[1]");
    assert_eq!(
        cases[3].result,
        CaseResult::Skipped {
            message: String::new(),
            xfail: true
        }
    );
    assert_eq!(
        cases[4].result,
        CaseResult::Skipped {
            message: "nah".into(),
            xfail: false
        }
    );
}

#[test]
fn junit_collection_errors_and_bare_testsuite_roots() {
    let xml = r#"<testsuite tests="1"><testcase classname="" name="tests.test_bad" file="tests/test_bad.py"><error message="collection failure">E   ModuleNotFoundError: No module named 'nonexistent'</error></testcase></testsuite>"#;
    let cases = parse_junit(xml).unwrap();
    assert_eq!(cases.len(), 1);
    assert_eq!(cases[0].line, None);
    assert_eq!(
        cases[0].result,
        CaseResult::Errored {
            message: "collection failure".into(),
            details: "E   ModuleNotFoundError: No module named 'nonexistent'".into()
        }
    );
    // No tests at all is an empty list, not an error: the rule decides what that means.
    assert_eq!(parse_junit("<testsuites/>").unwrap(), Vec::new());
}

#[test]
fn junit_that_is_not_junit_is_an_error() {
    assert!(parse_junit("").is_err());
    assert!(parse_junit("<testsuites><testcase>").is_err());
    let err = parse_junit("<coverage/>").unwrap_err();
    assert!(
        err.to_string().contains("root element is <coverage>"),
        "{err}"
    );
}

#[test]
fn a_junit_line_past_u32_has_no_line_instead_of_overflowing() {
    // Found by the `junit` fuzz target: pytest's 0-based line + 1 overflowed.
    let xml = r#"<testsuite><testcase classname="t" name="x" line="4294967295"/></testsuite>"#;
    assert_eq!(parse_junit(xml).unwrap()[0].line, None);
}

#[test]
fn a_coverage_json_line_both_executed_and_missing_counts_as_executed() {
    // Found by the `coverage` fuzz target.
    let json = r#"{"files": {"a.py": {"executed_lines": [1, 4], "missing_lines": [3, 4]}}}"#;
    let coverage = parse_coverage(CoverageFormat::CoverageJson, json).unwrap();
    assert_eq!(coverage["a.py"].executed, lines(&[1, 4]));
    assert_eq!(coverage["a.py"].missing, lines(&[3]));
}

fn lines(v: &[u32]) -> BTreeSet<u32> {
    v.iter().copied().collect()
}

#[test]
fn coverage_json_from_coverage_py() {
    let json = r#"{"meta": {"format": 3, "version": "7.17.3"}, "files": {"src/calc.py": {"executed_lines": [1, 4], "summary": {"covered_lines": 2}, "missing_lines": [2, 5, 6, 7], "excluded_lines": [], "functions": {}}}, "totals": {}}"#;
    let coverage = parse_coverage(CoverageFormat::CoverageJson, json).unwrap();
    assert_eq!(coverage.len(), 1);
    assert_eq!(coverage["src/calc.py"].executed, lines(&[1, 4]));
    assert_eq!(coverage["src/calc.py"].missing, lines(&[2, 5, 6, 7]));
    assert!(parse_coverage(CoverageFormat::CoverageJson, r#"{"meta": {}}"#).is_err());
}

#[test]
fn cobertura_from_coverage_py_merges_classes_of_one_file() {
    let xml = r#"<?xml version="1.0" ?>
<coverage version="7.17.3" line-rate="0.5">
	<sources><source>/tmp/pyprobe</source></sources>
	<packages>
		<package name="src">
			<classes>
				<class name="calc.py" filename="src/calc.py">
					<methods><method name="add"><lines><line number="2" hits="9"/></lines></method></methods>
					<lines>
						<line number="1" hits="1"/>
						<line number="2" hits="0"/>
						<line number="4" hits="3"/>
					</lines>
				</class>
				<class name="calc.py$Inner" filename="src/calc.py">
					<lines><line number="2" hits="2"/><line number="7" hits="0"/></lines>
				</class>
			</classes>
		</package>
	</packages>
</coverage>"#;
    let coverage = parse_coverage(CoverageFormat::Cobertura, xml).unwrap();
    assert_eq!(coverage["src/calc.py"].executed, lines(&[1, 2, 4]));
    assert_eq!(coverage["src/calc.py"].missing, lines(&[7]));
    let bad = r#"<coverage><packages><package><classes><class filename="a.py"><lines><line number="x" hits="1"/></lines></class></classes></package></packages></coverage>"#;
    let err = parse_coverage(CoverageFormat::Cobertura, bad).unwrap_err();
    assert!(err.to_string().contains("number=\"x\""), "{err}");
}

#[test]
fn lcov_from_coverage_py_and_other_tools() {
    let lcov = "TN:\nSF:src/calc.py\nDA:1,1\nDA:2,0\nDA:4,1\nDA:5,0,abc123\nLF:4\nLH:2\nFN:1,2,add\nend_of_record\nSF:/abs/other.js\nDA:3,12\nend_of_record\n";
    let coverage = parse_coverage(CoverageFormat::Lcov, lcov).unwrap();
    assert_eq!(coverage["src/calc.py"].executed, lines(&[1, 4]));
    assert_eq!(coverage["src/calc.py"].missing, lines(&[2, 5]));
    assert_eq!(coverage["/abs/other.js"].executed, lines(&[3]));
    let err = parse_coverage(CoverageFormat::Lcov, "DA:1,1\n").unwrap_err();
    assert!(err.to_string().contains("line 1: DA before SF"), "{err}");
}
